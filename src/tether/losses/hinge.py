"""Hinge loss on the DPO log-ratio margin, as in SLiC-HF (Zhao et al. 2023, "SLiC-HF: Sequence Likelihood
Calibration with Human Feedback", arXiv:2305.10425)::

    L = max(0, 1 - beta h),    h = (pc - rc) - (pr - rr)

``1 / beta`` is the margin the chosen log-ratio must exceed the rejected one by before the loss is zero.
"""

from __future__ import annotations

import torch

from tether.losses.base import LossOutput, PreferenceBatchLogps, PreferenceLossParams, log_ratios, reference_output


def hinge_loss(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> LossOutput:
    """SLiC hinge: ``relu(1 - beta h)``."""
    chosen, rejected = log_ratios(logps)
    losses = torch.relu(1 - params.beta * (chosen - rejected))
    return reference_output(losses, params.beta, chosen, rejected)
