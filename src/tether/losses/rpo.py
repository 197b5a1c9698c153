"""An SFT term added to any paired loss, as in RPO (Pang et al. 2024, "Iterative Reasoning Preference
Optimization", arXiv:2404.19733, Eq. 1)::

    L = L_pref + alpha * (-pc / |yc|)

i.e. the chosen completion's negative log-likelihood per token, weighted by alpha. (The paper normalises by
prompt plus completion length; here only completion tokens carry log-probs.) It wraps a loss instead of
living in each variant, so every loss in the registry gets it the same way.
"""

from __future__ import annotations

import torch

from tether.losses.base import LossOutput, PairedLoss, PreferenceBatchLogps, PreferenceLossParams, per_token


def chosen_nll(logps: PreferenceBatchLogps) -> torch.Tensor:
    """``-pc / |yc|``, the chosen completion's NLL per token, ``[B]``."""
    pc, lc = logps.require("policy_chosen", "chosen_lengths")
    return -per_token(pc, lc)


def with_nll(loss: PairedLoss, alpha: float) -> PairedLoss:
    """``loss`` plus ``alpha`` times the chosen NLL per token; the term is reported as ``terms["rpo_nll"]``."""

    def combined(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> LossOutput:
        out = loss(logps, params)
        nll = chosen_nll(logps)
        terms = {**out.terms, "rpo_nll": nll}
        return LossOutput(out.losses + alpha * nll, out.chosen_rewards, out.rejected_rewards, terms)

    combined.__name__ = f"{getattr(loss, '__name__', 'loss')}_with_nll"
    combined.__doc__ = f"{loss.__doc__}\n\nPlus {alpha} * chosen NLL per token (RPO)."
    return combined
