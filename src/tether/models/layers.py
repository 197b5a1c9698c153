"""Where a Hugging Face causal LM keeps its decoder layers, found by name (nothing is reimplemented).

The decoder layers are the ``ModuleList`` at ``model.layers`` (Llama, Mistral, Qwen, Gemma, SmolLM),
``model.decoder.layers`` (OPT), ``transformer.h`` (GPT-2), ``gpt_neox.layers`` or ``transformer.layers``;
failing those, the one ``ModuleList`` as long as ``config.num_hidden_layers``. DDP and peft wrappers are
looked through.
"""

from __future__ import annotations

from typing import Any

import torch

from tether.errors import UsageError
from tether.models.loading import inner_model

LAYER_LISTS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "transformer.layers")


def attribute_path(root: Any, dotted: str) -> Any:
    """``root.a.b.c`` for ``dotted = "a.b.c"``, or None where an attribute is missing."""
    for name in dotted.split("."):
        root = getattr(root, name, None)
        if root is None:
            return None
    return root


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The model's decoder layers (see the module docstring for where they are looked for)."""
    model = inner_model(model)
    for path in LAYER_LISTS:
        found = attribute_path(model, path)
        if isinstance(found, torch.nn.ModuleList) and len(found):
            return found
    expected = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == expected]
    if len(lists) == 1:
        return lists[0]
    raise UsageError(f"{type(model).__name__}: cannot find its decoder layers (looked at {', '.join(LAYER_LISTS)})")
