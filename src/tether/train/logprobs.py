"""Per-token log-probabilities without materialising fp32 logits for the whole batch.

The model is run for its final hidden states only (the LM head is applied to a single position), then
log p(y_t | y_<t) = h_t . w_{y_t} - logsumexp_v(h_t . w_v) is computed for the *selected* positions
(those with a label) in chunks. Each chunk is recomputed in the backward pass
(``torch.utils.checkpoint``), so peak memory holds one chunk of ``[chunk, vocab]`` logits instead of
``[batch, length, vocab]`` (TRL issue 3168).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from tether.data.tokenization import IGNORE_INDEX
from tether.models.loading import inner_model


def final_hidden_states(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
    """Hidden states after the final norm, ``[B, T, H]``, and the LM head module.

    The forward goes through ``model`` itself (so DDP hooks and peft adapters apply); the LM head only
    sees the last position (``logits_to_keep=1``).
    """
    base = inner_model(model)
    head = base.get_output_embeddings()
    inputs = {"input_ids": batch["input_ids"], "use_cache": False, "logits_to_keep": 1}
    if "position_ids" in batch:  # packed rows: no attention mask, positions restart per example
        inputs["position_ids"] = batch["position_ids"]
    elif "attention_mask" in batch:
        inputs["attention_mask"] = batch["attention_mask"]
    norm = getattr(base.get_decoder(), "norm", None) if hasattr(base, "get_decoder") else None
    if norm is None:
        out = model(**inputs, output_hidden_states=True)
        return out.hidden_states[-1], head
    captured: list[torch.Tensor] = []
    handle = norm.register_forward_hook(lambda _m, _i, output: captured.append(output))
    try:
        model(**inputs)
    finally:
        handle.remove()
    return captured[-1], head


def _chunk_logprobs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets):
    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    return logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def selected_logprobs(
    hidden: torch.Tensor, head: Any, labels: torch.Tensor, *, chunk_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p of each labelled next token: returns (``[N]`` log-probs, ``[B, T-1]`` boolean mask).

    ``labels`` are aligned with the inputs (as for Hugging Face causal LMs); position t predicts
    ``labels[:, t + 1]``. Positions whose label is ``IGNORE_INDEX`` are skipped entirely.
    """
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    h = hidden[:, :-1][mask]
    t = targets[mask]
    weight = head.weight
    bias = getattr(head, "bias", None)
    pieces = []
    for start in range(0, h.shape[0], chunk_size):
        hc, tc = h[start : start + chunk_size], t[start : start + chunk_size]
        if torch.is_grad_enabled() and (hc.requires_grad or weight.requires_grad):
            pieces.append(checkpoint(_chunk_logprobs, hc, weight, bias, tc, use_reentrant=False))
        else:
            pieces.append(_chunk_logprobs(hc, weight, bias, tc))
    logps = torch.cat(pieces) if pieces else hidden.new_zeros(0, dtype=torch.float32)
    return logps, mask


def sequence_logprobs(
    model: Any, batch: dict[str, torch.Tensor], *, chunk_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of the labelled tokens of each row ``[B]`` and the count of those tokens ``[B]``."""
    hidden, head = final_hidden_states(model, batch)
    logps, mask = selected_logprobs(hidden, head, batch["labels"], chunk_size=chunk_size)
    rows = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)[mask]
    sums = torch.zeros(mask.shape[0], dtype=logps.dtype, device=logps.device).index_add(0, rows, logps)
    return sums, mask.sum(-1)
