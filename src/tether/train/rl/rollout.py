"""A rollout: sampled responses to prompts, with everything the update needs, as ``[N, R]`` tensors.

Sequence i is ``prompt_i + response_i``; column j of every ``[N, R]`` tensor is response token j of row i
(left-aligned, ``mask`` marks real tokens). Per-token log-probs are read from the final hidden states at
the positions that predict response tokens only, in chunks (the LM head never runs over the prompt or the
padding), at the sampling temperature: ``log softmax(h . W / T)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from tether.train.logprobs import final_hidden_states


def _unset() -> torch.Tensor:
    return torch.zeros(0)


@dataclass
class Rollout:
    """One step's samples. ``ids``: prompt + response token ids per sample."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    texts: list[str]  # decoded responses
    truncated: torch.Tensor  # [N] bool: no EOS within max_new_tokens
    group: torch.Tensor  # [N] prompt index within the step (samples of a prompt share it)
    scores: torch.Tensor = field(default_factory=_unset)  # [N] reward (NaN: unscored)
    # Filled by the trainer's scoring pass (empty until then):
    logps: torch.Tensor = field(default_factory=_unset)  # [N, R] old policy log-probs
    ref_logps: torch.Tensor = field(default_factory=_unset)  # [N, R]
    entropy: torch.Tensor = field(default_factory=_unset)  # [N, R]
    advantages: torch.Tensor = field(default_factory=_unset)  # [N, R], by compute_advantages
    # PPO only (None for RLOO and GRPO):
    values: torch.Tensor | None = None  # [N, R] the value model's estimates
    returns: torch.Tensor | None = None  # [N, R] GAE returns

    def __len__(self) -> int:
        return len(self.response_ids)

    @property
    def mask(self) -> torch.Tensor:
        lengths = torch.tensor([len(r) for r in self.response_ids])
        width = max(1, int(lengths.max()) if len(lengths) else 1)
        return (torch.arange(width)[None, :] < lengths[:, None]).float()


def sequence_batch(prompt_ids: Sequence[list[int]], response_ids: Sequence[list[int]], pad_id: int) -> dict:
    """Right-padded ``prompt + response`` rows, their attention mask, and where each response starts."""
    rows = [p + r for p, r in zip(prompt_ids, response_ids, strict=True)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
    return {
        "input_ids": ids,
        "attention_mask": attention,
        "starts": torch.tensor([len(p) for p in prompt_ids]),
        "lengths": torch.tensor([len(r) for r in response_ids]),
    }


def _positions(batch: dict[str, torch.Tensor], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, R]`` indices of the positions that predict response tokens, and the 0/1 mask of real ones."""
    j = torch.arange(width, device=batch["input_ids"].device)[None, :]
    mask = j < batch["lengths"][:, None]
    index = (batch["starts"][:, None] - 1 + j).clamp(max=batch["input_ids"].shape[1] - 1)
    return index, mask


def _chunk(hidden, weight, bias, targets, temperature: float, with_entropy: bool):
    logits = torch.nn.functional.linear(hidden, weight, bias).float() / temperature
    normaliser = torch.logsumexp(logits, dim=-1)
    logps = logits.gather(-1, targets[:, None]).squeeze(-1) - normaliser
    if not with_entropy:
        return logps, logps.new_zeros(())
    probs = torch.softmax(logits, dim=-1)
    return logps, normaliser - (probs * logits).sum(-1)


def response_logprobs(
    model: Any,
    batch: dict[str, torch.Tensor],
    *,
    width: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[N, width]`` log-probs of the response tokens (0 at padding) and, if asked, the policy's entropy
    at each of those positions (no gradient)."""
    hidden, head = final_hidden_states(model, {k: batch[k] for k in ("input_ids", "attention_mask")})
    index, mask = _positions(batch, width)
    targets_full = batch["input_ids"].gather(1, (index + 1).clamp(max=batch["input_ids"].shape[1] - 1))
    selected = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))[mask]
    targets = targets_full[mask]
    weight, bias = head.weight, getattr(head, "bias", None)
    logps: list[torch.Tensor] = []
    entropies: list[torch.Tensor] = []
    for start in range(0, selected.shape[0], chunk_size):
        args = (selected[start : start + chunk_size], weight, bias, targets[start : start + chunk_size])
        if torch.is_grad_enabled() and (args[0].requires_grad or weight.requires_grad):
            lp, ent = checkpoint(_chunk, *args, temperature, with_entropy, use_reentrant=False)
        else:
            lp, ent = _chunk(*args, temperature, with_entropy)
        logps.append(lp)
        if with_entropy:
            entropies.append(ent.detach())
    out = torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device)
    if logps:
        out = out.masked_scatter(mask, torch.cat(logps))
    entropy = None
    if with_entropy:
        entropy = torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device)
        if entropies:
            entropy = entropy.masked_scatter(mask, torch.cat(entropies))
    return out, entropy


def response_values(value_model: Any, batch: dict[str, torch.Tensor], *, width: int) -> torch.Tensor:
    """``[N, width]`` values V(s_t) of the states that predict each response token (0 at padding)."""
    from tether.models.reward import token_scores

    scores = token_scores(value_model, {k: batch[k] for k in ("input_ids", "attention_mask")})
    index, mask = _positions(batch, width)
    return scores.gather(1, index) * mask
