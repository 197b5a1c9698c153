"""Scalar-head models: a reward model or a value model is a causal LM backbone with a linear head
``score: R^H -> R`` (``AutoModelForSequenceClassification`` with one label).

:func:`token_scores` reads the head's output at every position (a value model needs them all);
:func:`sequence_rewards` takes the one at each row's last real token (right padding), so tether never
depends on how a model class pools by pad token id.
"""

from __future__ import annotations

from typing import Any

import torch

from tether.errors import ModelError
from tether.models.loading import hub_error, inner_model, load_kwargs, resolve_weights

HEAD_NAMES = ("score", "classifier")


def load_scalar_model(
    spec: str,
    *,
    pad_token_id: int,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    revision: str | None = None,
    trainable_adapter: bool = False,
) -> Any:
    """A one-label sequence-classification model from a causal LM (new head) or a saved reward model.

    A peft adapter folder (written by ``tether rm train --lora``) loads its base, then the adapter and its
    trained head.
    """
    from transformers import AutoModelForSequenceClassification

    source, base = resolve_weights(spec)
    kwargs = {**load_kwargs(dtype, trust_remote_code), "num_labels": 1, "pad_token_id": pad_token_id}
    kwargs["attn_implementation"] = "sdpa"  # as load_model: never eager attention's [B, H, T, T] weights
    try:
        if base is None:
            model = AutoModelForSequenceClassification.from_pretrained(source, revision=revision, **kwargs)
        else:
            from peft import PeftModel

            model = AutoModelForSequenceClassification.from_pretrained(base, **kwargs)
            model = PeftModel.from_pretrained(model, source, is_trainable=trainable_adapter)
    except (OSError, ValueError) as err:
        raise hub_error(spec, err) from err
    head_module(model)  # fail now, not mid-run, when the architecture has no known head
    return model


def head_module(model: Any) -> torch.nn.Module:
    """The scalar head (``score`` for decoder models)."""
    base = inner_model(model)
    for name in HEAD_NAMES:
        head = getattr(base, name, None)
        if isinstance(head, torch.nn.Module):
            return head
    raise ModelError(f"{type(base).__name__} has no scalar head named {' or '.join(HEAD_NAMES)}")


def token_scores(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The head's output at every position, ``[B, T]`` (fp32), with a forward through ``model`` itself."""
    captured: list[torch.Tensor] = []
    handle = head_module(model).register_forward_hook(lambda _m, _i, output: captured.append(output))
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    finally:
        handle.remove()
    return captured[-1].squeeze(-1).float()


def sequence_rewards(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The score at each row's last attended token, ``[B]`` (rows must be right-padded)."""
    scores = token_scores(model, batch)
    last = batch["attention_mask"].sum(-1).clamp_min(1) - 1
    return scores.gather(1, last[:, None]).squeeze(1)
