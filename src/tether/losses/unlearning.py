"""Unlearning losses: push a model away from a forget set while a retain set holds the rest in place.

Inputs are per-sequence *summed* log-probs of the labelled tokens (``[B]``) and their token counts, as
:func:`tether.train.logprobs.sequence_logprobs` returns them; each loss returns per-sequence losses ``[B]``
(the training loop sums them and divides by the sequences of the optimizer step). Below, for a forget
sequence y with |y| labelled tokens, ``l = log pi(y|x)`` and ``l_ref`` the same under the frozen start.

- gradient ascent (Jang et al. 2023; the forget baseline of TOFU, Maini et al. 2024)::

      L_GA = l / |y|                                  (minimising it raises the forget NLL)

- gradient difference (Liu et al. 2022; TOFU's "grad diff"), with retain sequence z::

      L_GD = l / |y| - lambda * log pi(z) / |z|

- NPO, negative preference optimisation (Zhang et al. 2024, arXiv:2404.05868), DPO with only a
  dispreferred answer; bounded where gradient ascent diverges, and GA's gradient as beta -> 0::

      L_NPO = -(2 / beta) * log sigma(-beta * (l - l_ref))  (+ lambda * retain NLL per token)

- SimNPO (Fan et al. 2024, arXiv:2410.07163), reference-free and length-normalised::

      L_SimNPO = -(2 / beta) * log sigma(-(beta / |y|) * l - gamma)  (+ lambda * retain NLL per token)

- RMU, representation misdirection (Li et al. 2024, "The WMDP Benchmark", arXiv:2403.03218), on the
  hidden states h at the output of one decoder layer, a fixed random unit vector u scaled by c, and the
  frozen model's states h_frozen on retain text::

      L_RMU = mean_t ||h(x_f)_t - c u||^2 / d + alpha * mean_t ||h(x_r)_t - h_frozen(x_r)_t||^2 / d

  (``torch.nn.functional.mse_loss`` over positions and the d hidden units, as the authors compute it; here
  per sequence over the positions a mask keeps, padding never included).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _per_token(logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return logps / lengths.clamp(min=1).to(logps.dtype)


def retain_nll(logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per token of each retain sequence, ``-log pi(z) / |z|`` ``[B]``."""
    return -_per_token(logps, lengths)


def gradient_ascent_loss(logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``l / |y|``: the forget sequence's mean token log-prob, so that descending it ascends the NLL."""
    return _per_token(logps, lengths)


def npo_loss(logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO: ``-(2 / beta) log sigma(-beta (l - l_ref))`` on summed log-probs; ``(2 / beta) log 2`` at the start."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (logps - ref_logps))


def simnpo_loss(logps: torch.Tensor, lengths: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimNPO: ``-(2 / beta) log sigma(-(beta / |y|) l - gamma)``; no reference model."""
    return -(2.0 / beta) * F.logsigmoid(-beta * _per_token(logps, lengths) - gamma)


def masked_mse(states: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sequence over its real positions and hidden units ``[B]``.

    ``states`` ``[B, T, d]``; ``target`` broadcastable to it (a ``[d]`` control vector or ``[B, T, d]``
    frozen states); ``mask`` ``[B, T]`` (1 at real tokens). A row with no real token gives 0.
    """
    err = (states.float() - target.float()).pow(2).mean(-1)
    weights = mask.to(err.dtype)
    return (err * weights).sum(-1) / weights.sum(-1).clamp(min=1)


def control_vector(hidden_size: int, coefficient: float, *, seed: int) -> torch.Tensor:
    """RMU's target ``c u``: u uniform on [0, 1)^d, normalised to unit length (the authors' ``torch.rand``)."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(hidden_size, generator=generator)
    return coefficient * u / u.norm()
