"""Sparse autoencoders: ReLU+L1, TopK, BatchTopK and JumpReLU, one module with a loss function per architecture.

Every SAE encodes the centred input (decoder-bias pre-subtraction, Bricken et al. 2023)::

    z = (x - b_dec) W_enc + b_enc          W_enc [d_in, d_sae], b_enc [d_sae]
    x_hat = f(z) W_dec + b_dec             W_dec [d_sae, d_in], b_dec [d_in]

and is trained on ``L = mean_b ||x - x_hat||^2 + sparsity term`` (the squared error summed over ``d_in``,
averaged over the batch). The architectures differ in ``f`` and the sparsity term:

- ``relu`` (Bricken et al. 2023, with Anthropic's April 2024 update): ``f = ReLU(z)``,
  ``L = ||x - x_hat||^2 + lambda * sum_i f_i ||W_dec,i||`` (the L1 penalty weighted by each decoder row's
  norm, the decoder rows free, initialised with norm 0.1);
- ``topk`` (Gao et al. 2024): ``f = ReLU(TopK_k(z))``, exactly ``k`` latents per token (fewer only where
  a selected ``z`` is negative), ``L = ||x - x_hat||^2 + alpha * ||e - e_hat||^2`` with the AuxK loss:
  ``e = x - x_hat`` (no gradient), ``e_hat = ReLU(TopK_{k_aux}(z over dead latents)) W_dec``, ``alpha =
  1/32``, ``k_aux = d_in / 2`` (capped at the number of dead latents);
- ``batchtopk`` (Bussmann et al. 2024): the ``k * batch`` largest ``z`` of the whole batch are kept (k
  latents per token on average), the same AuxK loss; at inference a single threshold ``theta`` replaces the
  selection, ``f = z * H(z - theta)``, with ``theta`` an exponential moving average (rate 0.01, started
  at the first batch's value) of the smallest selected activation of each batch;
- ``jumprelu`` (Rajamanoharan et al. 2024): ``f = z * H(z - theta)`` with a learnt threshold per latent,
  ``L = ||x - x_hat||^2 + lambda * sum_i H(z_i - theta_i)`` (an L0 penalty). ``H`` has no gradient, so
  both terms use straight-through estimators with the rectangle kernel ``K(u) = 1{|u| < 1/2}`` and
  bandwidth ``eps``: ``d JumpReLU / d theta = -(theta / eps) K((z - theta) / eps)`` and
  ``d H / d theta = -(1 / eps) K((z - theta) / eps)`` (no gradient reaches ``z`` through ``H``). The
  threshold is a parameter itself, clamped at 0 after each step (as SAELens does: Adam moves a parameter
  by about its learning rate per step, too little for the paper's ``log theta`` in a short run).

TopK, BatchTopK and JumpReLU keep unit-norm decoder rows (Gao et al.; Bricken et al.): the gradient
component along each row is removed before the optimizer step and the rows renormalised after it.
``W_enc`` is initialised to ``W_dec^T`` (Gao et al.) and ``b_dec`` to the mean of the first batches.
TopK and BatchTopK train through :mod:`tether.interp.sae.sparse` (no dense [batch, d_sae] gradients).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from tether.interp.sae.sparse import SelectedPre, sparse_decode, to_dense, topk_of_batch, topk_per_row

Architecture = Literal["relu", "topk", "batchtopk", "jumprelu"]
ARCHITECTURES: tuple[str, ...] = ("relu", "topk", "batchtopk", "jumprelu")
UNIT_NORM = frozenset({"topk", "batchtopk", "jumprelu"})


@dataclass
class StepOutput:
    loss: torch.Tensor
    mse: torch.Tensor
    """``mean_b ||x - x_hat||^2``."""
    sparsity: torch.Tensor
    """The sparsity or AuxK term before its coefficient."""
    l0: torch.Tensor
    """Mean active latents per token."""
    fired: torch.Tensor
    """[d_sae] bool: latents active on some token of the batch."""
    x_hat: torch.Tensor


class SparseAutoencoder(nn.Module):
    """An SAE of one architecture; ``train_step`` gives the loss of a batch, ``encode``/``decode`` infer."""

    threshold: torch.Tensor
    threshold_ready: torch.Tensor

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        architecture: Architecture = "topk",
        *,
        k: float = 32,
        aux_k: int | None = None,
        aux_coefficient: float = 1 / 32,
        threshold: float = 0.01,
        bandwidth: float = 0.05,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {architecture!r}: expected one of {', '.join(ARCHITECTURES)}")
        self.d_in, self.d_sae, self.architecture = d_in, d_sae, architecture
        self.k, self.aux_coefficient, self.bandwidth = k, aux_coefficient, bandwidth
        self.aux_k = aux_k if aux_k is not None else d_in // 2
        w_dec = torch.randn(d_sae, d_in, generator=generator)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        if architecture == "relu":
            w_dec *= 0.1
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.t().clone().contiguous())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        if architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.full((d_sae,), float(threshold)))
        else:
            # BatchTopK's inference threshold (a buffer, never trained by the optimizer); unused otherwise
            self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("threshold_ready", torch.zeros((), dtype=torch.bool))

    @property
    def unit_norm(self) -> bool:
        return self.architecture in UNIT_NORM

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        """``z = (x - b_dec) W_enc + b_enc``."""
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations ``[n, d_sae]`` at inference (BatchTopK by its threshold)."""
        z = self.pre(x)
        if self.architecture == "relu":
            return torch.relu(z)
        if self.architecture == "topk":
            values, rows, cols = topk_per_row(z, int(self.k))
            return to_dense(torch.relu(values), rows, cols, tuple(z.shape))  # type: ignore[arg-type]
        return z * (z > self.threshold.clamp(min=0))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def train_step(self, x: torch.Tensor, coefficient: float, dead: torch.Tensor | None) -> StepOutput:
        """The loss of batch ``x`` [batch, d_in]; ``coefficient`` is lambda (ReLU, JumpReLU; warmed up by the
        caller), ``dead`` the [d_sae] mask of latents the AuxK loss revives (TopK, BatchTopK)."""
        return LOSSES[self.architecture](self, x, coefficient, dead)

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """``b_dec`` = the mean of a sample of inputs."""
        self.b_dec.copy_(x.mean(0))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient component parallel to each (unit-norm) decoder row."""
        if self.unit_norm and self.W_dec.grad is not None:
            grad, w = self.W_dec.grad, self.W_dec
            grad -= (grad * w).sum(1, keepdim=True) * w

    @torch.no_grad()
    def after_step(self) -> None:
        """Renormalise the decoder rows; keep JumpReLU thresholds non-negative."""
        if self.unit_norm:
            self.W_dec.data.div_(self.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8))
        if self.architecture == "jumprelu":
            self.threshold.clamp_(min=0)


def _out(
    sae: SparseAutoencoder,
    x: torch.Tensor,
    x_hat: torch.Tensor,
    sparsity: torch.Tensor,
    loss_extra: Any,
    fired: torch.Tensor,
    l0: torch.Tensor,
) -> StepOutput:
    mse = (x_hat - x).pow(2).sum(-1).mean()
    return StepOutput(mse + loss_extra, mse, sparsity, l0, fired, x_hat)


def relu_loss(sae: SparseAutoencoder, x: torch.Tensor, coefficient: float, dead: torch.Tensor | None) -> StepOutput:
    """``||x - x_hat||^2 + lambda * sum_i ReLU(z)_i ||W_dec,i||`` (module docstring)."""
    f = torch.relu(sae.pre(x))
    x_hat = sae.decode(f)
    sparsity = (f * sae.W_dec.norm(dim=1)).sum(-1).mean()
    active = f > 0
    return _out(sae, x, x_hat, sparsity, coefficient * sparsity, active.any(0), active.sum(-1).float().mean())


class JumpReLUFunction(torch.autograd.Function):
    """``z * H(z - theta)``; d/dz = ``H(z - theta)``, d/dtheta = ``-(theta / eps) K((z - theta) / eps)``."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:  # type: ignore[override]
        z, theta = ctx.saved_tensors
        kernel = ((z - theta).abs() < ctx.eps / 2).to(grad.dtype)
        grad_theta = -(theta / ctx.eps) * (kernel * grad).sum(0)
        return grad * (z > theta), grad_theta, None


class StepFunction(torch.autograd.Function):
    """``H(z - theta)``; d/dz = 0, d/dtheta = ``-(1 / eps) K((z - theta) / eps)``."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:  # type: ignore[override]
        z, theta = ctx.saved_tensors
        kernel = ((z - theta).abs() < ctx.eps / 2).to(grad.dtype)
        return None, -(1 / ctx.eps) * (kernel * grad).sum(0), None


def jumprelu_loss(sae: SparseAutoencoder, x: torch.Tensor, coefficient: float, dead: torch.Tensor | None) -> StepOutput:
    """``||x - x_hat||^2 + lambda * sum_i H(z_i - theta_i)`` with straight-through estimators."""
    z = sae.pre(x)
    f = JumpReLUFunction.apply(z, sae.threshold, sae.bandwidth)
    x_hat = sae.decode(f)
    l0 = StepFunction.apply(z, sae.threshold, sae.bandwidth).sum(-1).mean()
    active = f != 0
    return _out(sae, x, x_hat, l0, coefficient * l0, active.any(0), l0.detach())


def _k_sparse_loss(
    sae: SparseAutoencoder,
    x: torch.Tensor,
    dead: torch.Tensor | None,
    select: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[StepOutput, torch.Tensor]:
    """TopK and BatchTopK: ``||x - x_hat||^2 + alpha * AuxK``, trained through the sparse passes."""
    batch = x.shape[0]
    with torch.no_grad():
        x_c = x - sae.b_dec
        z = torch.addmm(sae.b_enc, x_c, sae.W_enc)
        values, rows, cols = select(z)
        n_main = values.numel()
        dead_ids = dead.nonzero().squeeze(1) if dead is not None else torch.empty(0, dtype=torch.int64)
        k_aux = min(sae.aux_k, dead_ids.numel())
        if k_aux:
            aux_values, aux_rows, aux_cols = topk_per_row(z[:, dead_ids], k_aux)
            aux_cols = dead_ids[aux_cols]
            values, rows, cols = (torch.cat(p) for p in ((values, aux_values), (rows, aux_rows), (cols, aux_cols)))
        del z
    selected = SelectedPre.apply(values, x_c, sae.W_enc, sae.b_enc, sae.b_dec, rows, cols)
    f = torch.relu(selected[:n_main])
    x_hat = sparse_decode(f, rows[:n_main], cols[:n_main], sae.W_dec, batch) + sae.b_dec
    mse = (x_hat - x).pow(2).sum(-1).mean()
    if k_aux:
        residual = (x - x_hat).detach()
        e_hat = sparse_decode(torch.relu(selected[n_main:]), rows[n_main:], cols[n_main:], sae.W_dec, batch)
        aux = (e_hat - residual).pow(2).sum(-1).mean()
    else:
        aux = x.new_zeros(())
    with torch.no_grad():
        # selected latents count as fired (a selected z <= 0, zeroed by the ReLU, is rare once trained)
        fired = torch.zeros(sae.d_sae, dtype=torch.bool).index_fill_(0, cols[:n_main], True)
        l0 = (f > 0).sum() / batch
    return StepOutput(mse + sae.aux_coefficient * aux, mse, aux.detach(), l0, fired, x_hat), f


def topk_loss(sae: SparseAutoencoder, x: torch.Tensor, coefficient: float, dead: torch.Tensor | None) -> StepOutput:
    """TopK with AuxK (module docstring)."""
    return _k_sparse_loss(sae, x, dead, lambda z: topk_per_row(z, int(sae.k)))[0]


def batchtopk_loss(
    sae: SparseAutoencoder, x: torch.Tensor, coefficient: float, dead: torch.Tensor | None
) -> StepOutput:
    """BatchTopK with AuxK; updates the inference threshold (module docstring)."""
    out, f = _k_sparse_loss(sae, x, dead, lambda z: topk_of_batch(z, sae.k))
    with torch.no_grad():
        positive = f[f > 0]
        if positive.numel():
            smallest = positive.min()
            if bool(sae.threshold_ready):
                sae.threshold.mul_(0.99).add_(0.01 * smallest)
            else:
                sae.threshold.copy_(smallest)
                sae.threshold_ready.fill_(True)
    return out


LOSSES: dict[str, Callable[[SparseAutoencoder, torch.Tensor, float, torch.Tensor | None], StepOutput]] = {
    "relu": relu_loss,
    "topk": topk_loss,
    "batchtopk": batchtopk_loss,
    "jumprelu": jumprelu_loss,
}
