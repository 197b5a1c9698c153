"""Per-token estimators of KL(pi || pi_ref) from samples y ~ pi (Schulman 2020, "Approximating KL
Divergence", http://joschu.net/blog/kl-approx.html).

With ``log_ratio = log pi(y_t) - log pi_ref(y_t)`` and ``r = pi_ref / pi = exp(-log_ratio)``:

- k1 = log_ratio                      unbiased, high variance, can be negative per sample
- k2 = (log_ratio)^2 / 2              biased, low variance, always >= 0
- k3 = (r - 1) - log r                unbiased, low variance, always >= 0 (GRPO's penalty)

Each returns a tensor of the same shape as its inputs; summing over a response's tokens estimates the
sequence-level KL.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

KLEstimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def kl_k1(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """k1 = log pi - log pi_ref."""
    return logps - ref_logps


def kl_k2(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """k2 = (log pi - log pi_ref)^2 / 2."""
    return 0.5 * (logps - ref_logps) ** 2


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """k3 = (pi_ref / pi - 1) - log(pi_ref / pi)."""
    log_r = ref_logps - logps
    return torch.expm1(log_r) - log_r


KL_ESTIMATORS: dict[str, KLEstimator] = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


class AdaptiveKLController:
    """The KL coefficient of Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences").

    After each rollout with observed KL ``kl`` over ``n`` samples::

        e = clip((kl - target) / target, -0.2, 0.2)
        beta <- beta * (1 + e * n / horizon)

    With ``target`` None the coefficient stays fixed.
    """

    def __init__(self, beta: float, target: float | None = None, horizon: int = 10000) -> None:
        self.beta = beta
        self.target = target
        self.horizon = horizon

    def update(self, kl: float, n: int) -> float:
        if self.target is not None:
            error = min(max((kl - self.target) / self.target, -0.2), 0.2)
            self.beta *= 1 + error * n / self.horizon
        return self.beta

    def state_dict(self) -> dict[str, float]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.beta = float(state["beta"])
