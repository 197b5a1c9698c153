"""Critic-free advantages from k samples of the same prompt (rewards shaped ``[P, k]``).

- RLOO (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
  Human Feedback in LLMs", arXiv:2402.14740), the leave-one-out baseline::

      A_i = R_i - 1/(k-1) sum_{j != i} R_j

- GRPO (Shao et al. 2024, "DeepSeekMath", arXiv:2402.03300), group-normalised rewards::

      A_i = (R_i - mean_j R_j) / (std_j R_j + eps)
"""

from __future__ import annotations

import torch


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantages of ``[P, k]`` rewards (k >= 2)."""
    k = rewards.shape[1]
    if k < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt")
    baseline = (rewards.sum(1, keepdim=True) - rewards) / (k - 1)
    return rewards - baseline


def grpo_advantages(rewards: torch.Tensor, *, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    """Group-normalised advantages of ``[P, k]`` rewards; ``scale=False`` only centres (Dr. GRPO)."""
    if rewards.shape[1] < 2:
        raise ValueError("GRPO needs at least 2 samples per prompt")
    centred = rewards - rewards.mean(1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(1, keepdim=True) + eps)
