"""Is a model's confidence worth trusting? Calibration and uncertainty metrics over scored answers.

Inputs are, per answer, a confidence ``c`` in [0, 1] (or an uncertainty ``u``, higher meaning less sure)
and whether the answer was right.

- **ECE**, expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks"), with
  B equal-width confidence bins: ``ECE = sum_b (|b| / n) * |acc(b) - conf(b)|``; the reliability diagram
  plots acc(b) against conf(b).
- **AUROC of an uncertainty for wrong answers**: the probability that a wrong answer gets a higher
  uncertainty than a right one (0.5: the score knows nothing; 1: it ranks every wrong answer first).
- **PRR**, prediction rejection ratio (Malinin and Gales 2021, "Uncertainty Estimation in Autoregressive
  Structured Prediction"): reject the most uncertain answers first, counting them right, and track the
  error ``(errors kept) / n``; PRR is the area between the random curve and the score's, over the same area
  for the oracle (which rejects wrong answers first). 1 is the oracle, 0 chance, below 0 worse than chance.
- **Risk-coverage** (Geifman and El-Yaniv 2017): answering only the ``k`` most confident, coverage ``k/n``
  and risk the error rate among them; AURC is the mean risk over all coverages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    confidence: float  # mean confidence in the bin (NaN when empty)
    accuracy: float  # share right in the bin (NaN when empty)


def _arrays(scores: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(correct, dtype=bool)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"scores and correct must be two lists of one length, got {x.shape} and {y.shape}")
    if x.size == 0:
        raise ValueError("no answers to measure")
    return x, y


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1]; a confidence of exactly 1 falls in the last bin."""
    c, y = _arrays(confidence, correct)
    if not np.isfinite(c).all() or ((c < 0) | (c > 1)).any():
        raise ValueError("confidences must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.minimum((c * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        members = index == b
        n = int(members.sum())
        out.append(
            ReliabilityBin(
                float(edges[b]),
                float(edges[b + 1]),
                n,
                float(c[members].mean()) if n else float("nan"),
                float(y[members].mean()) if n else float("nan"),
            )
        )
    return out


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """``sum_b (|b| / n) |acc(b) - conf(b)|`` over equal-width bins."""
    table = reliability_bins(confidence, correct, bins)
    n = sum(b.count for b in table)
    return float(sum(b.count / n * abs(b.accuracy - b.confidence) for b in table if b.count))


def auroc_for_errors(uncertainty: Sequence[float], correct: Sequence[bool]) -> float | None:
    """AUROC of ``uncertainty`` for telling wrong answers from right ones (ties count half); None when all
    answers are right or all wrong."""
    u, y = _arrays(uncertainty, correct)
    wrong = ~y
    if wrong.all() or not wrong.any():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(wrong, u))


def _expected_cumulative(order_key: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """``out[k]``: how many flags fall among the ``k`` items with the highest ``order_key`` (k = 0..n), ties
    taken in random order, so a tied group of g items with f flags adds f/g per item (its expected value)."""
    out = [0.0]
    for value in np.unique(order_key)[::-1]:
        group = order_key == value
        size, hits = int(group.sum()), float(flags[group].sum())
        out += [out[-1] + hits * (t + 1) / size for t in range(size)]
    return np.asarray(out)


def prediction_rejection_ratio(uncertainty: Sequence[float], correct: Sequence[bool]) -> float | None:
    """PRR (Malinin and Gales 2021): rejecting the ``k`` most uncertain answers (counted right, as an oracle
    would answer them), the error is ``(errors kept) / n``; ``AR`` is the area between the random curve
    ``E (n - k) / n`` and a curve, and ``PRR = AR_score / AR_oracle``. Ties are taken in random order (their
    expected curve). None when every answer is right or every one wrong."""
    u, y = _arrays(uncertainty, correct)
    wrong = (~y).astype(np.float64)
    n, errors = wrong.size, float(wrong.sum())
    if errors in (0.0, float(n)):
        return None
    k = np.arange(n)
    random = errors * (n - k) / n**2
    by_score = (errors - _expected_cumulative(u, wrong)[:-1]) / n
    oracle = np.maximum(errors - k, 0.0) / n
    return float((random - by_score).mean() / (random - oracle).mean())


def risk_coverage(confidence: Sequence[float], correct: Sequence[bool]) -> tuple[list[float], list[float], float]:
    """(coverages, risks, AURC): answering the k most confident for k = 1..n (ties in random order: their
    expected error count)."""
    c, y = _arrays(confidence, correct)
    errors = _expected_cumulative(c, (~y).astype(np.float64))[1:]
    k = np.arange(1, c.size + 1)
    risks = errors / k
    return (k / c.size).tolist(), risks.tolist(), float(risks.mean())
