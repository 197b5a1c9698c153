"""IPO, identity preference optimisation (Azar et al. 2023, "A General Theoretical Paradigm to Understand
Learning from Human Preferences", arXiv:2310.12036, Eq. 17), with tau = beta::

    L = (h_bar - 1 / (2 beta))^2,    h_bar = (pc - rc) / |yc| - (pr - rr) / |yr|

The log-ratios are **length-normalised** (average per completion token), as TRL does and as the IPO authors
confirmed their reported results use: with summed log-probs the squared loss would grow with completion
length and beta would mean something different for every dataset.
"""

from __future__ import annotations

from tether.losses.base import (
    LossOutput,
    PreferenceBatchLogps,
    PreferenceLossParams,
    log_ratios,
    per_token,
    reference_output,
)


def ipo_loss(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> LossOutput:
    """IPO: ``(h_bar - 1/(2 beta))^2`` on per-token log-ratios; needs ``chosen_lengths``/``rejected_lengths``."""
    chosen, rejected = log_ratios(logps)
    chosen_lengths, rejected_lengths = logps.require("chosen_lengths", "rejected_lengths")
    margin = per_token(chosen, chosen_lengths) - per_token(rejected, rejected_lengths)
    losses = (margin - 1 / (2 * params.beta)) ** 2
    return reference_output(losses, params.beta, chosen, rejected, margin=margin)
