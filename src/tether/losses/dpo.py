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
"""

from __future__ import annotations

import torch.nn.functional as F

from tether.losses.base import LossOutput, PreferenceBatchLogps, PreferenceLossParams, log_ratios, reference_output


def sigmoid_loss(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> LossOutput:
    """DPO: ``-log sigma(beta h)``."""
    chosen, rejected = log_ratios(logps)
    losses = -F.logsigmoid(params.beta * (chosen - rejected))
    return reference_output(losses, params.beta, chosen, rejected)


def cdpo_loss(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> LossOutput:
    """Conservative DPO: ``-(1 - eps) log sigma(beta h) - eps log sigma(-beta h)``; eps = 0 is DPO."""
    chosen, rejected = log_ratios(logps)
    logits, eps = params.beta * (chosen - rejected), params.label_smoothing
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return reference_output(losses, params.beta, chosen, rejected)


def robust_loss(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> LossOutput:
    """Robust DPO: ``((1 - eps)(-log sigma(beta h)) - eps(-log sigma(-beta h))) / (1 - 2 eps)``."""
    eps = params.label_smoothing
    if not 0 <= eps < 0.5:
        raise ValueError(f"robust DPO needs 0 <= label_smoothing < 0.5 (the flip rate), got {eps}")
    chosen, rejected = log_ratios(logps)
    logits = params.beta * (chosen - rejected)
    losses = ((1 - eps) * -F.logsigmoid(logits) - eps * -F.logsigmoid(-logits)) / (1 - 2 * eps)
    return reference_output(losses, params.beta, chosen, rejected)
