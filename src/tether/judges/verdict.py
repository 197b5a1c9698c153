"""A judge's answer about one response: a label, why, and which judge (or layer) decided.

Every judge can say it could not score a response (``UNSCORED``: an empty answer, a target error, an
LLM judge that replied off-format). Such responses are counted and reported, never silently treated as a
refusal or as compliance (garak issue 1413, PyRIT issue 2044).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

RefusalLabel = Literal["complies", "partial", "refuses"]
REFUSAL_LABELS: tuple[RefusalLabel, ...] = ("complies", "partial", "refuses")
UNSCORED = "unscored"


@dataclass(frozen=True)
class Verdict:
    label: str
    """One of the judge's labels, or ``UNSCORED``."""
    reason: str
    """Why, in a few words (the matched phrase, the classifier's probabilities, the LLM's reason)."""
    judge: str
    """The judge or layer that decided (``phrases``, ``classifier``, ``llm``)."""
    confidence: float | None = None

    @property
    def scored(self) -> bool:
        return self.label != UNSCORED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unscored(reason: str, judge: str) -> Verdict:
    return Verdict(UNSCORED, reason, judge)
