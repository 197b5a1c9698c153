"""The logistic (Bradley-Terry) DPO family: plain, conservative and robust.

With the log-ratio margin ``h = (pc - rc) - (pr - rr)`` (policy ``p``, reference ``r``, chosen ``c``,
rejected ``r``), every loss here is a function of ``beta * h``:

- sigmoid (Rafailov et al. 2023, "Direct Preference Optimization", arXiv:2305.18290)::

      L = -log sigma(beta h)

- cdpo, conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences & relationship to IPO"),
  labels flipped with probability eps::

      L = -(1 - eps) log sigma(beta h) - eps log sigma(-beta h)

- robust (Chowdhury et al. 2024, "Provably Robust DPO", arXiv:2403.00409), an unbiased estimator of the
  clean-label loss under flip rate eps < 1/2::

      L = ((1 - eps)(-log sigma(beta h)) - eps(-log sigma(-beta h))) / (1 - 2 eps)

For cdpo and robust, eps is per pair: ``1 - p_chosen`` for a pair with a soft label (the probability that its
chosen completion really is better, e.g. an AI judge's from `tether cai label`), else ``--label-smoothing``
(:func:`tether.losses.base.flip_rates`). With a soft label, cdpo is the cross-entropy of sigma(beta h) against
the target probability p_chosen (the soft targets Bai et al. 2022 train their AI-feedback preference models on).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tether.losses.base import (
    LossOutput,
    PreferenceBatchLogps,
    PreferenceLossParams,
    flip_rates,
    log_ratios,
    reference_output,
)


def sigmoid_loss(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> LossOutput:
    """DPO: ``-log sigma(beta h)``."""
    chosen, rejected = log_ratios(logps)
    losses = -F.logsigmoid(params.beta * (chosen - rejected))
    return reference_output(losses, params.beta, chosen, rejected)


def cdpo_loss(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> LossOutput:
    """Conservative DPO: ``-(1 - eps) log sigma(beta h) - eps log sigma(-beta h)``; eps = 0 is DPO; eps per pair
    where pairs carry soft labels (``eps = 1 - p_chosen``)."""
    chosen, rejected = log_ratios(logps)
    logits, eps = params.beta * (chosen - rejected), flip_rates(logps, params)
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return reference_output(losses, params.beta, chosen, rejected)


def robust_loss(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> LossOutput:
    """Robust DPO: ``((1 - eps)(-log sigma(beta h)) - eps(-log sigma(-beta h))) / (1 - 2 eps)``; eps per pair
    where pairs carry soft labels (``eps = 1 - p_chosen``, so those need p_chosen > 1/2)."""
    eps = flip_rates(logps, params)
    if isinstance(eps, float) and not 0 <= eps < 0.5:
        raise ValueError(f"robust DPO needs 0 <= label_smoothing < 0.5 (the flip rate), got {eps}")
    if isinstance(eps, torch.Tensor) and not bool(((eps >= 0) & (eps < 0.5)).all()):
        raise ValueError(f"robust DPO needs every flip rate 1 - p_chosen in [0, 0.5), got {eps.tolist()}")
    chosen, rejected = log_ratios(logps)
    logits = params.beta * (chosen - rejected)
    losses = ((1 - eps) * -F.logsigmoid(logits) - eps * -F.logsigmoid(-logits)) / (1 - 2 * eps)
    return reference_output(losses, params.beta, chosen, rejected)
