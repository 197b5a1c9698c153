"""The detector protocol, what it is given (:class:`Sample`), and the registry ``tether guard detectors`` lists.

A detector class declares its ``name``, the ``sides`` it checks (input rails see the request, output rails the
answer), a pydantic ``Options`` model (a rail's ``options:`` in the guard YAML, checked by ``tether validate``),
its ``default_threshold`` and whether it finds spans (only those can ``mask``). ``check(sample)`` returns one
:class:`~tether.guard.detection.Detection`: ``flag`` when its score reaches the threshold.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from tether.config.options import Options
from tether.config.options import Options as OptionsModel
from tether.guard.detection import Detection, DetectorVerdict, Span
from tether.guard.normalize import View, views
from tether.registry import Registry

Side = Literal["input", "output"]
Role = Literal["user", "system", "tool", "assistant"]


class EmbeddingCache:
    """Sentence embeddings shared by the detectors of one check: each distinct text is embedded once."""

    def __init__(self, embed: Callable[[Sequence[str]], Any]) -> None:
        self._embed = embed
        self._done: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> Any:
        import torch

        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._done))
            if missing:
                for text, row in zip(missing, self._embed(missing), strict=True):
                    self._done[text] = row
            return torch.stack([self._done[t] for t in texts])


@dataclass
class Sample:
    """One text to check, with what a detector may need to judge it."""

    text: str
    side: Side = "input"
    role: Role = "user"
    """``tool`` for a tool result or retrieved document (indirect prompt injection), else who wrote it."""
    prompt: str | None = None
    """Output side: the request the answer replies to."""
    input_flagged: bool = False
    """Output side: an input rail flagged the request (and, being log-only, let it through)."""
    decode_depth: int = 2
    embed: EmbeddingCache | None = None
    _views: list[View] | None = field(default=None, repr=False)

    @property
    def views(self) -> list[View]:
        """The text as written, its normalised form when different, and each decoded payload."""
        if self._views is None:
            self._views = views(self.text, depth=self.decode_depth)
        return self._views


class NoOptions(Options):
    """This detector takes no options."""


class Detector(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    sides: ClassVar[tuple[Side, ...]] = ("input", "output")
    roles: ClassVar[tuple[Role, ...]] = ("user", "tool")
    """Input side: whose messages it reads by default (tool results and documents, or only the user's)."""
    finds_spans: ClassVar[bool] = False
    """Its flags carry spans of the text as written, so a rail may ``mask`` them instead of blocking."""
    Options: ClassVar[type[Options]] = NoOptions
    default_threshold: ClassVar[float] = 0.5
    inline: bool = True
    """Fast enough (patterns, Presidio) to run in the request's own thread; models go to the rail pool."""
    needs_artifact: ClassVar[bool] = False
    """It loads a file made by ``tether guard train`` (named in its options)."""

    def __init__(self, options: OptionsModel | None = None, *, threshold: float | None = None) -> None:
        self.options = options if options is not None else self.Options()
        self.threshold = self.default_threshold if threshold is None else threshold

    @abstractmethod
    def score(self, sample: Sample) -> tuple[float, str, str, tuple[Span, ...]]:
        """(score in [0, 1], reason, the view that decided, spans in the text as written)."""

    def check(self, sample: Sample) -> Detection:
        start = time.perf_counter()
        score, reason, view, spans = self.score(sample)
        verdict: DetectorVerdict = "flag" if score >= self.threshold else "pass"
        return Detection(self.name, verdict, score, reason, view, spans, time.perf_counter() - start)

    def warm_up(self) -> None:  # noqa: B027  (most detectors have nothing to load)
        """Load what ``score`` needs (models, indexes) so the first request does not pay for it."""


class ViewDetector(Detector):
    """A detector that scores each view of the text on its own and keeps the strongest."""

    scans_decoded: ClassVar[bool] = True
    """Also score payloads decoded from the text (base64, ROT13 ...), not only the text and its normal form."""

    @abstractmethod
    def score_text(self, text: str) -> tuple[float, str, tuple[Span, ...]]:
        """(score, reason, spans) for one reading of the text."""

    def score(self, sample: Sample) -> tuple[float, str, str, tuple[Span, ...]]:
        best: tuple[float, str, str, tuple[Span, ...]] = (0.0, "nothing found", "text", ())
        for view in sample.views:
            if not self.scans_decoded and view.how not in ("text", "normalized"):
                continue
            score, reason, spans = self.score_text(view.text)
            if score > best[0]:
                best = (score, reason, view.how, spans if view.how == "text" else ())
            if score >= 1.0:
                break
        return best


DETECTORS: Registry[type[Detector]] = Registry("guard detector")


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: ``@register`` adds a detector under its ``name``."""
    return DETECTORS.add(cls.name, cls)
