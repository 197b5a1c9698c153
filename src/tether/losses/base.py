"""Inputs and outputs shared by every preference loss.

All log-probabilities are *summed* over the completion tokens of one sequence (``[B]``), as returned by
:func:`tether.train.logprobs.sequence_logprobs`; lengths are the number of those tokens. Losses that need
per-token averages divide by the lengths themselves, so callers always pass sums.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class PreferenceBatchLogps:
    """Summed completion log-probs of a batch of (chosen, rejected) pairs, each ``[B]``.

    ``ref_*`` are ``None`` for reference-free losses (ORPO, SimPO); ``*_lengths`` are ``None`` unless a loss
    normalises by length (IPO, ORPO, SimPO, the RPO NLL term). ``p_chosen`` holds each pair's soft label, the
    probability that chosen really is better (NaN for a pair without one; ``None`` when no pair has one):
    cdpo and robust read it as the per-example flip rate ``eps = 1 - p_chosen`` (:func:`flip_rates`). A loss
    ignores the fields it does not use.
    """

    policy_chosen: torch.Tensor
    policy_rejected: torch.Tensor
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None
    chosen_lengths: torch.Tensor | None = None
    rejected_lengths: torch.Tensor | None = None
    p_chosen: torch.Tensor | None = None

    def require(self, *names: str) -> tuple[torch.Tensor, ...]:
        """The named fields, or a ``ValueError`` naming the loss's missing inputs."""
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise ValueError(f"this loss needs {', '.join(missing)}: pass them in PreferenceBatchLogps")
        return tuple(getattr(self, name) for name in names)


@dataclass(frozen=True)
class PreferenceLossParams:
    """Hyper-parameters of the paired losses; each loss reads only its own.

    Attributes:
        beta: inverse temperature of the implicit reward (all losses; IPO's regulariser tau; ORPO and SimPO
            scale their reference-free rewards by it).
        label_smoothing: probability eps that a label is flipped (cdpo, robust); robust needs eps < 1/2. A
            pair's own soft label, where it has one, overrides it (:func:`flip_rates`).
        gamma: SimPO's target reward margin.
        delta: BCO's reward shift, a running mean of past rewards (see :class:`tether.losses.bco.RunningMean`).
        orpo_lambda: weight of ORPO's odds-ratio term against its NLL term.
    """

    beta: float = 0.1
    label_smoothing: float = 0.0
    gamma: float = 0.5
    delta: float = 0.0
    orpo_lambda: float = 0.1


@dataclass
class LossOutput:
    """Per-example losses ``[B]`` (sum or mean them as the caller normalises), detached implicit rewards
    ``[B]``, and any further named terms of the loss (not detached, so a caller may weight them)."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


PairedLoss = Callable[[PreferenceBatchLogps, PreferenceLossParams], LossOutput]


def flip_rates(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> torch.Tensor | float:
    """The flip rate eps of each pair: ``1 - p_chosen`` where the pair carries a soft label, else the global
    ``params.label_smoothing`` (a float when no pair of the batch has a soft label)."""
    if logps.p_chosen is None:
        return params.label_smoothing
    p = logps.p_chosen.to(logps.policy_chosen.dtype)
    return torch.where(torch.isnan(p), torch.full_like(p, params.label_smoothing), 1 - p)


def per_token(logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Average log-prob per completion token, ``logps / max(lengths, 1)``."""
    return logps / lengths.clamp(min=1).to(logps.dtype)


def log_ratios(logps: PreferenceBatchLogps) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pc - rc, pr - rr)``: how much more likely the policy makes each completion than the reference."""
    pc, pr, rc, rr = logps.require("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected")
    return pc - rc, pr - rr


def reference_output(
    losses: torch.Tensor, beta: float, chosen: torch.Tensor, rejected: torch.Tensor, **terms: torch.Tensor
) -> LossOutput:
    """A :class:`LossOutput` whose rewards are the DPO implicit rewards ``beta * (logp - ref_logp)``, from the
    log-ratios ``chosen = pc - rc`` and ``rejected = pr - rr``."""
    return LossOutput(losses, (beta * chosen).detach(), (beta * rejected).detach(), dict(terms))
