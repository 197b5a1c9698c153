"""What a detector says about one text: a verdict, a score in [0, 1], a reason, and where it looked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DetectorVerdict = Literal["pass", "flag", "error"]
"""``flag``: the detector found what it looks for; ``error``: it could not decide (an explicit state)."""


@dataclass(frozen=True)
class Span:
    """Characters ``[start, end)`` of the text that was checked, and what they are (``EMAIL_ADDRESS``)."""

    start: int
    end: int
    kind: str


@dataclass(frozen=True)
class Detection:
    detector: str
    verdict: DetectorVerdict
    score: float
    reason: str
    view: str = "text"
    """Which reading of the input decided it: ``text`` or a decoded payload (``base64``, ``rot13`` ...)."""
    spans: tuple[Span, ...] = ()
    """Where the finding is in the checked text (for masking); empty when it is the text as a whole."""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return self.verdict == "flag"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "detector": self.detector,
            "verdict": self.verdict,
            "score": round(self.score, 6),
            "reason": self.reason,
            "view": self.view,
            "seconds": round(self.seconds, 6),
        }
        if self.spans:
            out["spans"] = [{"start": s.start, "end": s.end, "kind": s.kind} for s in self.spans]
        if self.details:
            out["details"] = self.details
        return out


def passed(detector: str, score: float = 0.0, reason: str = "nothing found") -> Detection:
    return Detection(detector, "pass", score, reason)


def failed(detector: str, reason: str) -> Detection:
    """The detector could not decide (error or deadline); the pipeline's fail policy says what follows."""
    return Detection(detector, "error", 0.0, reason)


def merge_spans(spans: list[Span] | tuple[Span, ...]) -> list[Span]:
    """Overlapping spans as one (the kind of the one that starts first, longest first), in text order."""
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if out and span.start < out[-1].end:
            last = out[-1]
            out[-1] = Span(last.start, max(last.end, span.end), last.kind)
        else:
            out.append(span)
    return out
