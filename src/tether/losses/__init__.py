"""Preference losses as small pure functions of summed completion log-probs (no model inside).

Paired losses share one signature, ``loss(logps: PreferenceBatchLogps, params: PreferenceLossParams) ->
LossOutput``, and are chosen by name from :data:`PAIRED_LOSSES`; each module's docstring states its formula and
paper. KTO is unpaired and has its own signature (:func:`kto_loss`). Add an SFT term to any paired loss with
:func:`with_nll` (RPO).
"""

from __future__ import annotations

from tether.losses.base import (
    LossOutput,
    PairedLoss,
    PreferenceBatchLogps,
    PreferenceLossParams,
    flip_rates,
    per_token,
)
from tether.losses.bco import RunningMean, bco_loss
from tether.losses.dpo import cdpo_loss, robust_loss, sigmoid_loss
from tether.losses.hinge import hinge_loss
from tether.losses.ipo import ipo_loss
from tether.losses.kto import kto_loss, kto_reference_point
from tether.losses.orpo import log1mexp, log_odds, orpo_loss
from tether.losses.rpo import chosen_nll, with_nll
from tether.losses.simpo import simpo_loss

PAIRED_LOSSES: dict[str, PairedLoss] = {
    "sigmoid": sigmoid_loss,
    "cdpo": cdpo_loss,
    "robust": robust_loss,
    "hinge": hinge_loss,
    "ipo": ipo_loss,
    "bco": bco_loss,
    "orpo": orpo_loss,
    "simpo": simpo_loss,
}

REFERENCE_FREE: frozenset[str] = frozenset({"orpo", "simpo"})
"""Losses that never read ``ref_chosen``/``ref_rejected`` (no reference model needs to be loaded)."""


def paired_loss(name: str, *, nll_alpha: float = 0.0) -> PairedLoss:
    """The paired loss called ``name``, plus ``nll_alpha`` times the chosen NLL per token when non-zero."""
    try:
        loss = PAIRED_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown preference loss {name!r}; choose one of {', '.join(PAIRED_LOSSES)}") from None
    return with_nll(loss, nll_alpha) if nll_alpha else loss


__all__ = [
    "PAIRED_LOSSES",
    "REFERENCE_FREE",
    "LossOutput",
    "PairedLoss",
    "PreferenceBatchLogps",
    "PreferenceLossParams",
    "RunningMean",
    "bco_loss",
    "cdpo_loss",
    "chosen_nll",
    "flip_rates",
    "hinge_loss",
    "ipo_loss",
    "kto_loss",
    "kto_reference_point",
    "log1mexp",
    "log_odds",
    "orpo_loss",
    "paired_loss",
    "per_token",
    "robust_loss",
    "sigmoid_loss",
    "simpo_loss",
    "with_nll",
]
