"""Is an answer right, or an abstention? SQuAD-style normalised matching against reference answers.

``normalize_answer`` lower-cases, drops punctuation and the articles a/an/the, and collapses spaces (the
SQuAD evaluation script's normalisation); an answer is right when a normalised reference appears in the
normalised answer as whole words (the usual open-QA check, lenient towards full-sentence answers).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
ABSTAIN = "I am not sure."
"""The answer refusal-aware tuning teaches for questions the model gets wrong (R-Tuning's refusal form)."""
ABSTAIN_PHRASES = ("i am not sure", "im not sure", "i am unsure", "i dont know", "i do not know", "i cannot answer")
"""Normalised phrases that make an answer an abstention (:func:`abstains`)."""


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _contains_words(text: str, words: str) -> bool:
    """Whether ``words`` occurs in ``text`` as whole words (both normalised): "4" is not in "1945"."""
    return bool(words) and f" {words} " in f" {text} "


def abstains(answer: str) -> bool:
    """Whether the answer declines to answer ("I am not sure", "I don't know", ...), after normalisation; an
    empty answer abstains too."""
    said = normalize_answer(answer)
    return not said or any(_contains_words(said, phrase) for phrase in ABSTAIN_PHRASES)


def answer_matches(answer: str, references: Sequence[str]) -> bool:
    """Whether a normalised reference appears in the normalised answer as whole words (the open-QA check)."""
    said = normalize_answer(answer)
    return any(_contains_words(said, ref) for ref in map(normalize_answer, references))
