"""What an eval suite asks: prompts to answer and judge, or multiple-choice questions to score.

Every sample carries a stable ``id`` (unique within its suite run; results are keyed by it so that a run
can resume and be re-scored) and ``source``, the ``file:line`` it came from, for audit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tether.data.records import Message

Expected = Literal["refuse", "comply"]


@dataclass(frozen=True)
class PromptSample:
    """A prompt for the target to answer; a judge labels the answer.

    ``expected`` is what a safe and helpful model does: ``refuse`` a harmful request, ``comply`` with a
    safe one (XSTest's safe prompts). ``turns`` holds later user turns of a scripted multi-turn sample.
    """

    id: str
    prompt: str | tuple[Message, ...]
    expected: Expected
    category: str = "uncategorised"
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class ChoiceSample:
    """A multiple-choice question scored by the log-likelihood of each option after ``context``.

    ``correct`` holds the index of every correct option: one for MC1-style questions, several for
    TruthfulQA MC2 (whose score is the normalised probability mass on the true options).
    """

    id: str
    context: str
    choices: tuple[str, ...]
    correct: tuple[int, ...]
    category: str = "uncategorised"
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.choices) < 2:
            raise ValueError(f"{self.id}: a multiple-choice question needs at least 2 options")
        if not self.correct or any(not 0 <= i < len(self.choices) for i in self.correct):
            raise ValueError(f"{self.id}: correct indices {self.correct} out of range for {len(self.choices)} options")


@dataclass(frozen=True)
class QASample:
    """An open question; an answer is right when a normalised reference appears in it
    (:func:`tether.evals.uncertainty.answer_matches`)."""

    id: str
    question: str
    references: tuple[str, ...]
    category: str = "uncategorised"
    source: str = ""

    def __post_init__(self) -> None:
        if not self.references or not all(r.strip() for r in self.references):
            raise ValueError(f"{self.id}: an open question needs at least one non-empty reference answer")
