"""Per-answer uncertainty of free-form answers, from the answer's token log-probs or from several samples.

For an answer y of T tokens with log-probs ``l_t = log p(y_t | x, y_<t)`` and next-token distributions p_t:

- **sequence probability** ``P(y) = exp(sum_t l_t)``; as an uncertainty, ``-sum_t l_t`` (the greedy answer's
  negative log-likelihood; Malinin and Gales 2021 call its exponential "maximum sequence probability");
- **perplexity** ``exp(-(1/T) sum_t l_t)``, the length-normalised version;
- **mean token entropy** ``(1/T) sum_t H(p_t)``, ``H(p) = -sum_v p(v) log p(v)``;
- **p(True)** (Kadavath et al. 2022, "Language Models (Mostly) Know What They Know"): the model is shown the
  question and its own answer and asked whether the answer is true; ``P(True) / (P(True) + P(False))`` of
  the two option tokens is its confidence (:func:`p_true_context` builds the prompt);
- **semantic entropy** (Kuhn et al. 2023; Farquhar et al. 2024, Nature): M sampled answers grouped into
  meaning classes, here by normalised exact match (SQuAD's normalisation, :mod:`tether.data.answers`), and
  ``SE = -sum_c p(c) log p(c)`` with ``p(c)`` the share of samples in class c (discrete SE), or, given the
  samples' log-probs, their probability mass in c over the mass of all samples.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import torch

from tether.data.answers import ABSTAIN, ABSTAIN_PHRASES, abstains, answer_matches, normalize_answer

__all__ = [
    "ABSTAIN",
    "ABSTAIN_PHRASES",
    "abstains",
    "answer_matches",
    "mean_token_entropy",
    "normalize_answer",
    "p_true",
    "p_true_context",
    "perplexity",
    "semantic_entropy",
    "sequence_nll",
    "token_entropies",
]


def sequence_nll(logprobs: Sequence[float]) -> float:
    """``-sum_t l_t``: the negative log of the sequence probability."""
    return -float(sum(logprobs))


def perplexity(logprobs: Sequence[float]) -> float:
    """``exp(-(1/T) sum_t l_t)``; needs at least one token."""
    if not logprobs:
        raise ValueError("perplexity needs at least one token")
    return math.exp(-sum(logprobs) / len(logprobs))


def token_entropies(logits: torch.Tensor) -> torch.Tensor:
    """``H(p_t)`` for each row of ``logits`` ``[T, V]`` (natural log), computed in float32."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def mean_token_entropy(entropies: Sequence[float]) -> float:
    if not entropies:
        raise ValueError("mean token entropy needs at least one token")
    return float(sum(entropies) / len(entropies))


def p_true_context(question: str, answer: str) -> str:
    """Kadavath et al.'s self-evaluation prompt; score the options ``("True", "False")`` after it."""
    return (
        f"Question: {question.strip()}\nProposed Answer: {answer.strip()}\n"
        "Is the proposed answer:\n (A) True\n (B) False\nThe proposed answer is:"
    )


def p_true(true_logprob: float, false_logprob: float) -> float:
    """``P(True) / (P(True) + P(False))`` from the two options' log-probs."""
    top = max(true_logprob, false_logprob)
    a, b = math.exp(true_logprob - top), math.exp(false_logprob - top)
    return a / (a + b)


def semantic_entropy(answers: Sequence[str], logprobs: Sequence[float] | None = None) -> float:
    """Entropy over the meaning classes of ``answers`` (module docstring); discrete without ``logprobs``."""
    if not answers:
        raise ValueError("semantic entropy needs at least one sampled answer")
    if logprobs is not None and len(logprobs) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(logprobs)} log-probs")
    weights = [1.0] * len(answers)
    if logprobs is not None:
        top = max(logprobs)
        weights = [math.exp(lp - top) for lp in logprobs]
    mass: dict[str, float] = defaultdict(float)
    for answer, weight in zip(answers, weights, strict=True):
        mass[normalize_answer(answer)] += weight
    total = sum(mass.values())
    return float(-sum(m / total * math.log(m / total) for m in mass.values() if m > 0))
