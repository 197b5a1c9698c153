"""Named places in a Hugging Face causal LM where activations are read or edited ("sites").

A site is ``KIND.LAYER``:

- ``resid_pre.i``: the residual stream entering decoder layer ``i`` (``resid_pre.0`` is the embeddings);
- ``resid_post.i``: the residual stream leaving decoder layer ``i`` (before the final norm for the last one);
- ``attn_out.i`` / ``mlp_out.i``: what layer ``i``'s attention / MLP block adds to the residual stream.

Sites map to the model's own modules (found by name, nothing is reimplemented): the decoder layers are the
``ModuleList`` at ``model.layers`` (Llama, Mistral, Qwen, Gemma, SmolLM), ``transformer.h`` (GPT-2),
``gpt_neox.layers`` and similar, and within a layer the attention block is ``self_attn``/``attn``/
``attention`` and the MLP ``mlp``/``feed_forward``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from tether.errors import UsageError
from tether.models.layers import attribute_path, decoder_layers
from tether.models.loading import inner_model

KINDS = ("resid_pre", "resid_post", "attn_out", "mlp_out")
ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")
MLP_NAMES = ("mlp", "feed_forward", "ffn")


@dataclass(frozen=True)
class Site:
    kind: str
    layer: int

    def __str__(self) -> str:
        return f"{self.kind}.{self.layer}"


def parse_site(text: str, layers: int) -> Site:
    """``"resid_post.3"`` -> ``Site("resid_post", 3)``; negative layers count from the top."""
    kind, _, number = text.strip().partition(".")
    if kind not in KINDS or not number.lstrip("-").isdigit():
        raise UsageError(f"site {text!r}: expected KIND.LAYER with KIND one of {', '.join(KINDS)} (e.g. resid_post.3)")
    layer = int(number)
    layer = layer + layers if layer < 0 else layer
    if not 0 <= layer < layers:
        raise UsageError(f"site {text!r}: the model has layers 0..{layers - 1}")
    return Site(kind, layer)


def parse_sites(text: str, layers: int) -> list[Site]:
    """A comma-separated list of sites; ``KIND.*`` means that kind at every layer."""
    out: list[Site] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.endswith(".*"):
            out += [parse_site(f"{part[:-2]}.{i}", layers) for i in range(layers)]
        else:
            out.append(parse_site(part, layers))
    if not out:
        raise UsageError("no sites given (e.g. resid_post.* or resid_post.3,mlp_out.3)")
    return list(dict.fromkeys(out))


def _child(layer: torch.nn.Module, names: tuple[str, ...], what: str) -> torch.nn.Module:
    for name in names:
        found = getattr(layer, name, None)
        if isinstance(found, torch.nn.Module):
            return found
    raise UsageError(f"{type(layer).__name__}: no {what} block named {' or '.join(names)}")


def site_module(model: Any, site: Site) -> tuple[torch.nn.Module, Literal["input", "output"]]:
    """The module whose input (``resid_pre``) or output (the other kinds) is the site."""
    layer = decoder_layers(model)[site.layer]
    if site.kind == "resid_pre":
        return layer, "input"
    if site.kind == "resid_post":
        return layer, "output"
    if site.kind == "attn_out":
        return _child(layer, ATTENTION_NAMES, "attention"), "output"
    return _child(layer, MLP_NAMES, "MLP"), "output"


def hidden_size(model: Any) -> int:
    config = inner_model(model).config
    return int(getattr(config, "hidden_size", None) or config.n_embd)


def layer_count(model: Any) -> int:
    return len(decoder_layers(model))


def final_norm(model: Any) -> torch.nn.Module:
    """The norm applied to the last residual stream before the unembedding (identity if the model has none)."""
    model = inner_model(model)
    for path in ("model.norm", "model.final_layernorm", "transformer.ln_f", "gpt_neox.final_layer_norm"):
        found = attribute_path(model, path)
        if isinstance(found, torch.nn.Module):
            return found
    return torch.nn.Identity()
