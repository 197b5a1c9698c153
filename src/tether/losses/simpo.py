"""SimPO, simple preference optimisation (Meng et al. 2024, "SimPO: Simple Preference Optimization with a
Reference-Free Reward", arXiv:2405.14734, Eq. 6). No reference model::

    L = -log sigma(beta / |yc| * pc - beta / |yr| * pr - gamma)

The implicit reward is the average log-prob per completion token scaled by beta; gamma is the target
reward margin.
"""

from __future__ import annotations

import torch.nn.functional as F

from tether.losses.base import LossOutput, PreferenceBatchLogps, PreferenceLossParams, per_token


def simpo_loss(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> LossOutput:
    """SimPO: ``-log sigma(beta pc/|yc| - beta pr/|yr| - gamma)``; rewards are ``beta * logp / length``."""
    pc, pr, lc, lr = logps.require("policy_chosen", "policy_rejected", "chosen_lengths", "rejected_lengths")
    chosen, rejected = params.beta * per_token(pc, lc), params.beta * per_token(pr, lr)
    losses = -F.logsigmoid(chosen - rejected - params.gamma)
    return LossOutput(losses, chosen.detach(), rejected.detach())
