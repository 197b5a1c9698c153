"""BCO, binary classifier optimisation, paired form (Jung et al. 2024, "Binary Classifier Optimization for
Large Language Model Alignment", arXiv:2404.04656)::

    L = -log sigma(beta (pc - rc) - delta) - log sigma(-(beta (pr - rr) - delta))

Chosen and rejected completions are classified separately against the reward shift ``delta``, a running
mean of the implicit rewards seen so far. The loss takes ``delta`` as an input (``params.delta``); the
caller keeps a :class:`RunningMean`::

    running = RunningMean()
    ...
    chosen, rejected = beta * (pc - rc), beta * (pr - rr)
    delta = running.update(torch.cat([chosen, rejected]))
    out = bco_loss(logps, dataclasses.replace(params, delta=delta))

(TRL 1.16's ``bco_pair`` is this loss with ``delta = 0``.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tether.losses.base import LossOutput, PreferenceBatchLogps, PreferenceLossParams, log_ratios, reference_output


def bco_loss(logps: PreferenceBatchLogps, params: PreferenceLossParams) -> LossOutput:
    """BCO-pair: ``-log sigma(beta (pc - rc) - delta) - log sigma(-(beta (pr - rr) - delta))``."""
    chosen, rejected = log_ratios(logps)
    delta = params.delta
    losses = -F.logsigmoid(params.beta * chosen - delta) - F.logsigmoid(-(params.beta * rejected - delta))
    return reference_output(losses, params.beta, chosen, rejected)


class RunningMean:
    """Mean of every value passed to :meth:`update` so far (count-weighted across batches).

    In distributed training, gather the rewards of all ranks before updating so every rank sees one delta.
    Save :meth:`state_dict` with the checkpoint so a resumed run continues the same mean.
    """

    def __init__(self) -> None:
        self.mean = 0.0
        self.count = 0

    def update(self, values: torch.Tensor) -> float:
        """Fold ``values`` into the mean and return the new mean."""
        n = values.numel()
        if n:
            batch_mean = float(values.detach().double().mean())
            self.count += n
            self.mean += (batch_mean - self.mean) * n / self.count
        return self.mean

    def state_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "count": self.count}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.mean, self.count = float(state["mean"]), int(state["count"])
