"""Sparse forward and backward passes for k-sparse codes (TopK, BatchTopK): no dense [batch, d_sae] gradient.

A k-sparse code is a list of ``(row, col, value)`` triples, ``rows`` sorted (row-major order). Of a TopK
step's six large matrix products (encoder forward; decoder forward; the decoder's weight and input
gradients; the encoder's weight and input gradients) only the encoder forward needs the dense
``[batch, d_in] @ [d_in, d_sae]`` product; the other five touch only the ``n = batch * k`` selected
entries, O(n * d_in) instead of O(batch * d_sae * d_in) (Gao et al. 2024, section 5.2, use sparse kernels
for the same reason):

- decode ``x_hat[b] = sum_j v_bj W_dec[c_bj]``: ``embedding_bag`` with per-sample weights (its backward
  gives d/dv); the decoder weight gradient ``F^T g`` is a sparse-dense product;
- encoder: ``z = (x - b_dec) W_enc + b_enc`` is computed without autograd, the selected entries then pass
  through :class:`SelectedPre`, whose backward gives ``dW_enc = x_c^T G`` (sparse-dense),
  ``db_enc = 1^T G`` and ``db_dec = -W_enc (1^T G)`` (``b_dec`` enters every row alike, so its gradient is
  one matrix-vector product, never ``G W_enc^T``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F


def _coo(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, shape, check_invariants=False)


class SelectedPre(torch.autograd.Function):
    """Identity on the selected pre-activations ``z[rows, cols]``; the backward routes their gradient to the
    encoder weights and biases and to ``b_dec`` (through the centred input ``x_c = x - b_dec``)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        values: torch.Tensor,
        x_c: torch.Tensor,
        w_enc: torch.Tensor,
        b_enc: torch.Tensor,
        b_dec: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(x_c, w_enc, rows, cols)
        return values.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x_c, w_enc, rows, cols = ctx.saved_tensors
        d_sae = w_enc.shape[1]
        grad_b_enc = torch.zeros(d_sae, dtype=grad.dtype).index_add_(0, cols, grad)
        grad_w = None
        if ctx.needs_input_grad[2]:
            # dW_enc^T [d_sae, d_in] = G^T x_c with G [batch, d_sae] sparse
            grad_w = torch.sparse.mm(_coo(cols, rows, grad, (d_sae, x_c.shape[0])), x_c).t()
        grad_b_dec = -(w_enc @ grad_b_enc) if ctx.needs_input_grad[4] else None
        return None, None, grad_w, grad_b_enc if ctx.needs_input_grad[3] else None, grad_b_dec, None, None


class _DecoderGrad(torch.autograd.Function):
    """Identity on the decoded output; the backward adds the decoder weight gradient ``F^T g``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, out: torch.Tensor, w_dec: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(rows, cols, values)
        ctx.d_sae = w_dec.shape[0]
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        rows, cols, values = ctx.saved_tensors
        grad_w = torch.sparse.mm(_coo(cols, rows, values, (ctx.d_sae, grad.shape[0])), grad)
        return grad, grad_w, None, None, None


def offsets_of(rows: torch.Tensor, batch: int) -> torch.Tensor:
    """``embedding_bag`` offsets (start of each row's entries) of sorted ``rows``."""
    counts = torch.bincount(rows, minlength=batch)
    return torch.cumsum(counts, 0) - counts


def sparse_decode(
    values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, w_dec: torch.Tensor, batch: int
) -> torch.Tensor:
    """``sum_j v_j W_dec[c_j]`` per row: ``[batch, d_in]`` (no decoder bias), differentiable in ``values`` and
    ``w_dec``."""
    out = F.embedding_bag(cols, w_dec.detach(), offsets_of(rows, batch), mode="sum", per_sample_weights=values)
    if not w_dec.requires_grad:
        return out
    return _DecoderGrad.apply(out, w_dec, rows, cols, values.detach())


def topk_per_row(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(values, rows, cols)`` of each row's ``k`` largest entries."""
    values, cols = pre.topk(k, dim=-1, sorted=False)
    rows = torch.arange(pre.shape[0]).repeat_interleave(k)
    return values.reshape(-1), rows, cols.reshape(-1)


def topk_of_batch(pre: torch.Tensor, k: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(values, rows, cols)`` of the ``round(k * batch)`` largest entries of the whole batch (BatchTopK),
    in row-major order."""
    n = max(1, min(pre.numel(), round(k * pre.shape[0])))
    values, flat = pre.reshape(-1).topk(n, sorted=False)
    flat, order = flat.sort()
    return values[order], flat // pre.shape[1], flat % pre.shape[1]


def to_dense(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    out = torch.zeros(shape, dtype=values.dtype)
    out[rows, cols] = values
    return out
