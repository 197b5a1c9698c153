"""ORPO, odds-ratio preference optimisation (Hong et al. 2024, "ORPO: Monolithic Preference Optimization
without Reference Model", arXiv:2403.07691, Eqs. 4-7). No reference model::

    L = -a_c + lambda * (-log sigma(log odds(a_c) - log odds(a_r)))
    log odds(a) = a - log(1 - exp(a))

where ``a_c = pc / |yc|`` and ``a_r = pr / |yr|`` are the length-normalised log-probs (average per
completion token), so the first term is the chosen completion's NLL per token. ``log(1 - exp(a))`` is
evaluated stably by :func:`log1mexp`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tether.losses.base import LossOutput, PreferenceBatchLogps, PreferenceLossParams, per_token

_LOG_HALF = -math.log(2.0)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x <= 0`` without cancellation (Maechler 2012, "Accurately computing
    log(1 - exp(-|a|))"): ``log(-expm1(x))`` for ``x > -log 2``, ``log1p(-exp(x))`` below.

    ``x`` is clamped just below 0 (where the odds are infinite), and each branch is fed only its own range,
    so neither value nor gradient is ever NaN.
    """
    x = x.clamp(max=-torch.finfo(x.dtype).tiny)
    near_zero = torch.log(-torch.expm1(x.clamp(min=_LOG_HALF)))
    far = torch.log1p(-torch.exp(x.clamp(max=_LOG_HALF)))
    return torch.where(x > _LOG_HALF, near_zero, far)


def log_odds(logp: torch.Tensor) -> torch.Tensor:
    """``log(p / (1 - p))`` from ``log p``."""
    return logp - log1mexp(logp)


def orpo_loss(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> LossOutput:
    """ORPO: chosen NLL per token ``+ orpo_lambda * -log sigma(log odds(a_c) - log odds(a_r))``.

    Rewards are the reference-free ``beta * a`` (as TRL logs them); terms: ``nll``, ``odds_ratio`` (the
    unweighted second term) and ``log_odds_ratio``.
    """
    pc, pr, lc, lr = logps.require("policy_chosen", "policy_rejected", "chosen_lengths", "rejected_lengths")
    chosen, rejected = per_token(pc, lc), per_token(pr, lr)
    ratio = log_odds(chosen) - log_odds(rejected)
    nll = -chosen
    odds_ratio = -F.logsigmoid(ratio)
    losses = nll + params.orpo_lambda * odds_ratio
    rewards = (params.beta * chosen).detach(), (params.beta * rejected).detach()
    return LossOutput(losses, *rewards, {"nll": nll, "odds_ratio": odds_ratio, "log_odds_ratio": ratio})
