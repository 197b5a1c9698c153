"""Bradley-Terry reward-model loss (Bradley & Terry 1952; Ouyang et al. 2022, InstructGPT).

With scalar rewards r_c (chosen) and r_r (rejected), an optional margin m (Touvron et al. 2023, Llama 2)
and the centring term of Eisenstein et al. 2023 ("Helping or Herding?") with coefficient c::

    L = -log sigma(r_c - r_r - m) + c (r_c + r_r)^2

With a soft label p, the probability that chosen really is better (an AI judge's, from `tether cai label`;
the soft Bradley-Terry target of Bai et al. 2022's preference models), the first term is the cross-entropy
against p::

    L = -p log sigma(d) - (1 - p) log sigma(-d) + c (r_c + r_r)^2,   d = r_c - r_r - m

p = 1 (a pair without a soft label) is the usual loss.
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
    p_chosen: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Per-pair losses ``[B]``; ``p_chosen`` is each pair's soft label (1: the usual hard label)."""
    logits = chosen - rejected - margin
    if isinstance(p_chosen, float) and p_chosen == 1.0:
        loss = -F.logsigmoid(logits)
    else:
        loss = -p_chosen * F.logsigmoid(logits) - (1 - p_chosen) * F.logsigmoid(-logits)
    if center_coefficient:
        loss = loss + center_coefficient * (chosen + rejected) ** 2
    return loss
