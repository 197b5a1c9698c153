"""PPO's pieces as pure functions on ``[B, T]`` response tensors with a 0/1 ``mask`` (Schulman et al. 2017,
"Proximal Policy Optimization Algorithms", arXiv:1707.06347; for language models, Ouyang et al. 2022,
InstructGPT, and Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO").

- GAE (Schulman et al. 2016, arXiv:1506.02438), with V = 0 after the last response token::

      delta_t = r_t + gamma V_{t+1} - V_t,   A_t = delta_t + gamma lambda A_{t+1},   R_t = A_t + V_t

- clipped policy loss, with ``ratio = exp(log pi - log pi_old)``::

      L_pi = max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps))

- clipped value loss::

      L_V = 1/2 max((V - R)^2, (clip(V, V_old - eps_v, V_old + eps_v) - R)^2)
"""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1 (over everything, or along ``dim``)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp_min(1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp_min(1.0)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True) -> torch.Tensor:
    """``(x - mean) / std`` over the masked entries (unbiased variance); the mean is kept when not shifting."""
    mean = masked_mean(values, mask)
    count = mask.sum().clamp_min(2.0)
    var = (((values - mean) ** 2) * mask).sum() / (count - 1)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns ``(A, R)``, both ``[B, T]`` and zero outside ``mask``.

    ``mask`` must mark a contiguous run of response tokens starting at column 0 (left-aligned responses).
    """
    mask = mask.to(values.dtype)
    values = values * mask
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def clipped_policy_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, *, clip: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token clipped surrogate loss and a 0/1 tensor of where the clip was active (its gradient is 0)."""
    ratio = torch.exp(logps - old_logps)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return torch.maximum(unclipped, clipped), (clipped > unclipped).to(logps.dtype)


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, *, clip: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token clipped value loss and a 0/1 tensor of where the clipped term was the larger one."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    return 0.5 * torch.maximum(unclipped, clipped), (clipped > unclipped).to(values.dtype)
