"""Bradley-Terry reward-model loss (Bradley & Terry 1952; Ouyang et al. 2022, InstructGPT).

With scalar rewards r_c (chosen) and r_r (rejected), an optional margin m (Touvron et al. 2023, Llama 2)
and the centring term of Eisenstein et al. 2023 ("Helping or Herding?") with coefficient c::

    L = -log sigma(r_c - r_r - m) + c (r_c + r_r)^2
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    *,
    margin: torch.Tensor | float = 0.0,
    center_coefficient: float = 0.0,
) -> torch.Tensor:
    """Per-pair losses ``[B]``."""
    loss = -F.logsigmoid(chosen - rejected - margin)
    if center_coefficient:
        loss = loss + center_coefficient * (chosen + rejected) ** 2
    return loss
