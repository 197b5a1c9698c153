"""Toxicity: the offline profanity/offensive-language classifier tether's toxicity suite uses, or any Hugging
Face toxicity classifier (``model``). The score is the classifier's probability of offensive text."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from tether.config.options import Options
from tether.guard.detection import Span
from tether.guard.detectors.base import ViewDetector, register


class ToxicityOptions(Options):
    model: str = "profanity-check"
    """profanity-check (offline, alt-profanity-check) or a Hugging Face sequence classifier (folder or hub id)."""
    label: str | None = None
    """A Hugging Face classifier's toxic label (default: the one naming toxic)."""


@register
class Toxicity(ViewDetector):
    name: ClassVar[str] = "toxicity"
    summary: ClassVar[str] = "offensive language (alt-profanity-check offline, or a Hugging Face classifier)"
    Options = ToxicityOptions
    default_threshold: ClassVar[float] = 0.8

    def __init__(self, options: ToxicityOptions | None = None, *, threshold: float | None = None) -> None:
        super().__init__(options, threshold=threshold)
        self._scorer: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._scorer is None:
                from tether.evals.toxicity import make_toxicity_scorer

                opts: ToxicityOptions = self.options  # type: ignore[assignment]
                self._scorer = make_toxicity_scorer(opts.model, label=opts.label)

    def score_text(self, text: str) -> tuple[float, str, tuple[Span, ...]]:
        self.warm_up()
        p = float(self._scorer.score([text])[0])
        return p, f"p(offensive) = {p:.2f}", ()
