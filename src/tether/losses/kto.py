"""KTO, Kahneman-Tversky optimisation (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic
Optimization", arXiv:2402.01306, Eq. 7). Unpaired: each example is desirable or undesirable on its own.

With the log-ratio ``r = logp - ref_logp`` of an example and the reference point ``z0``::

    desirable:    L = lambda_D (1 - sigma(beta (r - z0)))
    undesirable:  L = lambda_U (1 - sigma(beta (z0 - r)))
    z0 = max(0, mean_i(policy_kl_i - ref_kl_i))        (detached)

``z0`` estimates KL(pi || pi_ref) from *mismatched* pairs (each prompt with another example's completion,
``policy_kl_logps`` / ``ref_kl_logps``). In distributed training, average the estimate across ranks before
clamping, as TRL does (``kto_reference_point`` of the gathered tensors).
"""

from __future__ import annotations

import torch

from tether.losses.base import LossOutput


def kto_reference_point(policy_kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor) -> torch.Tensor:
    """``z0 = max(0, mean(policy_kl_logps - ref_kl_logps))``, detached; 0 for an empty batch."""
    if policy_kl_logps.numel() == 0:
        return policy_kl_logps.new_zeros(())
    return (policy_kl_logps - ref_kl_logps).mean().detach().clamp(min=0)


def kto_loss(
    policy_desirable: torch.Tensor,
    ref_desirable: torch.Tensor,
    policy_undesirable: torch.Tensor,
    ref_undesirable: torch.Tensor,
    *,
    z0: torch.Tensor | float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> LossOutput:
    """KTO losses ``[N_D + N_U]``, desirable examples first; either set may be empty.

    ``chosen_rewards``/``rejected_rewards`` are ``beta * r`` of the desirable/undesirable examples; terms:
    ``desirable`` and ``undesirable`` (weighted losses of each set) and ``z0``.
    """
    desirable_ratio = policy_desirable - ref_desirable
    undesirable_ratio = policy_undesirable - ref_undesirable
    z0 = torch.as_tensor(z0, dtype=desirable_ratio.dtype, device=desirable_ratio.device)
    desirable = desirable_weight * (1 - torch.sigmoid(beta * (desirable_ratio - z0)))
    undesirable = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - undesirable_ratio)))
    return LossOutput(
        torch.cat([desirable, undesirable]),
        (beta * desirable_ratio).detach(),
        (beta * undesirable_ratio).detach(),
        {"desirable": desirable, "undesirable": undesirable, "z0": z0},
    )
