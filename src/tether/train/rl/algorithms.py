"""What differs between PPO, RLOO and GRPO: how advantages are formed and where the KL penalty goes.

- ppo: per-token reward ``-beta k_t`` plus the score at the last token; GAE over a value model.
- rloo: sequence reward ``score - beta sum_t k_t``; leave-one-out baseline over the prompt's k samples.
- grpo: sequence reward ``score``; group-normalised; ``beta k_t`` (k3 by default) is added to the loss.

Samples whose reward could not be scored (NaN) get zero advantage and are masked out of the losses; in
RLOO/GRPO the baseline uses the scored samples of the group only, and a group left with fewer than two
scored samples is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tether.config import GRPOConfig, PPOConfig, RLConfig
from tether.losses.group import grpo_advantages, rloo_advantages
from tether.losses.kl import KL_ESTIMATORS
from tether.losses.ppo import gae, masked_whiten
from tether.train.rl.rollout import Rollout


@dataclass(frozen=True)
class Algorithm:
    name: str
    uses_value_model: bool
    kl_in_loss: bool
    aggregation: str  # "token": mean over all tokens; "sequence": mean over samples of per-sample means


ALGORITHMS = {
    "ppo": Algorithm("ppo", uses_value_model=True, kl_in_loss=False, aggregation="token"),
    "rloo": Algorithm("rloo", uses_value_model=False, kl_in_loss=False, aggregation="token"),
    "grpo": Algorithm("grpo", uses_value_model=False, kl_in_loss=True, aggregation="sequence"),
}


def token_kl(rollout: Rollout, estimator: str) -> torch.Tensor:
    """``[N, R]`` per-token KL estimates of the rollout's old policy against the reference (0 at padding)."""
    return KL_ESTIMATORS[estimator](rollout.logps, rollout.ref_logps) * rollout.mask


def valid_mask(rollout: Rollout) -> torch.Tensor:
    """``[N, R]`` response mask with unscored samples removed."""
    return rollout.mask * (~torch.isnan(rollout.scores)).float()[:, None]


def compute_advantages(rollout: Rollout, algorithm: Algorithm, *, beta: float, config: RLConfig) -> None:
    """Fill ``rollout.advantages`` (and ``returns`` for PPO)."""
    mask = valid_mask(rollout)
    scores = torch.nan_to_num(rollout.scores, nan=0.0)
    if isinstance(config, PPOConfig):
        assert rollout.values is not None, "PPO rollouts carry the value model's values"
        rewards = -beta * token_kl(rollout, config.kl_estimator)
        last = (rollout.mask.sum(1).long() - 1).clamp_min(0)
        rewards[torch.arange(len(rollout)), last] += scores
        advantages, returns = gae(rewards * mask, rollout.values, mask, gamma=config.gamma, lam=config.lam)
        rollout.returns = returns
    else:
        sequence = scores.clone()
        if not algorithm.kl_in_loss:
            sequence = sequence - beta * token_kl(rollout, config.kl_estimator).sum(1)
        per_sample = group_advantages(sequence, rollout.group, ~torch.isnan(rollout.scores), algorithm, config)
        advantages = per_sample[:, None] * mask
    if config.whiten_advantages:
        advantages = masked_whiten(advantages, mask)
    rollout.advantages = advantages * mask


def group_advantages(
    rewards: torch.Tensor, group: torch.Tensor, scored: torch.Tensor, algorithm: Algorithm, config: RLConfig
) -> torch.Tensor:
    """Per-sample advantages from each group's scored members (0 for the rest)."""
    out = torch.zeros_like(rewards)
    for g in group.unique():
        members = ((group == g) & scored).nonzero().squeeze(1)
        if len(members) < 2:
            continue
        values = rewards[members][None, :]
        if isinstance(config, GRPOConfig):
            out[members] = grpo_advantages(values, scale=config.scale_rewards)[0]
        else:
            out[members] = rloo_advantages(values)[0]
    return out
