"""What an inspection feeds the model: token ids, padded batches, the forward keywords, and the loaded model.

Special tokens follow :mod:`tether.data.tokenization`: a text is tokenized with ``add_special_tokens=False``
and the tokenizer's own prefix (a BOS token, for tokenizers that add one) is prepended unless the text
already starts with it (a chat template writes it), so no sequence starts with two BOS tokens.

Batches are padded on the tokenizer's side (``tokenizer.pad``) and given ``position_ids`` counted over the
real tokens only, so a left-padded row sees the positions it would see alone (what ``generate`` does).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tether.models.loading import inner_model, load_model, load_tokenizer


def special_prefix(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before a text when asked to add special tokens (e.g. ``[BOS]``)."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    start = with_special.index(plain[0]) if plain and plain[0] in with_special else 0
    return list(with_special[:start])


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text (see the module docstring for special tokens); no truncation."""
    prefix = special_prefix(tokenizer)
    out = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        ids = list(ids)
        out.append(ids if not prefix or ids[: len(prefix)] == prefix else prefix + ids)
    return out


@dataclass
class Batch:
    input_ids: torch.Tensor
    """[batch, positions], padded on the tokenizer's padding side."""
    attention_mask: torch.Tensor
    """[batch, positions], 1 at real tokens."""

    @property
    def mask(self) -> torch.Tensor:
        return self.attention_mask.bool()

    @property
    def positions(self) -> torch.Tensor:
        """Each token's position among its example's real tokens (0 for padding)."""
        return (self.attention_mask.long().cumsum(1) - 1).clamp(min=0)


def pad(tokenizer: Any, ids: Sequence[Sequence[int]]) -> Batch:
    padded = tokenizer.pad({"input_ids": [list(i) for i in ids]}, return_tensors="pt")
    return Batch(padded["input_ids"].long(), padded["attention_mask"].long())


def device_of(model: Any) -> torch.device:
    return next(model.parameters()).device


def forward_kwargs(model: Any, batch: Batch, *, last_logits_only: bool = False) -> dict[str, Any]:
    """Keywords for ``model(**kwargs)`` on the model's device: ids, mask, positions over real tokens, no KV
    cache and, with ``last_logits_only``, the unembedding at the last position only (``logits_to_keep=1``)."""
    device = device_of(model)
    accepted = inspect.signature(inner_model(model).forward).parameters
    kwargs: dict[str, Any] = {
        "input_ids": batch.input_ids.to(device),
        "attention_mask": batch.attention_mask.to(device),
        "use_cache": False,
    }
    if "position_ids" in accepted:
        kwargs["position_ids"] = batch.positions.to(device)
    if last_logits_only and "logits_to_keep" in accepted:
        kwargs["logits_to_keep"] = 1
    return kwargs


def load_inspected(spec: str, *, dtype: str, trust_remote_code: bool, revision: str | None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for inspection: the model in eval mode, on the GPU when there is one."""
    tokenizer = load_tokenizer(spec, trust_remote_code=trust_remote_code, revision=revision)
    model = load_model(spec, dtype=dtype, trust_remote_code=trust_remote_code, revision=revision).eval()
    if torch.cuda.is_available():
        model.to("cuda")
    return model, tokenizer


def token_labels(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token as text, for axis labels (a newline shown as ``\\n``)."""
    return [tokenizer.decode([i]).replace("\n", "\\n") for i in ids]
