"""A direction in the residual stream and what can be done with it (Arditi et al. 2024):

- **refusal score**: ``log p - log(1 - p)`` with ``p`` the next-token probability of the refusal tokens at the
  first answer position (SmolLM2 and most chat models open a refusal with "I" or "As", no leading space: the
  default ``refusal_tokens``);
- **directional ablation** ``x <- x - r^ r^T x`` at ``resid_pre`` of every layer and on every attention and MLP
  output (so no layer can write the direction back); **activation addition** ``x <- x + r`` at one layer's
  ``resid_pre``, every position;
- **weight orthogonalisation** ``W <- W - r^ r^T W`` of the token embeddings and every matrix writing to the
  residual stream (attention output and MLP down projections, their biases too): a plain checkpoint whose
  logits equal ablation by hooks (tied input/output embeddings are untied first: the unembedding reads the
  stream, it does not write it);
- the loss of completions under edits, refusal rates of judged answers, and the direction's file format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tether.errors import UsageError
from tether.interp.hooks import Edit
from tether.interp.sites import ATTENTION_NAMES, MLP_NAMES, Site, decoder_layers, layer_count
from tether.models.loading import inner_model

OUTPUT_NAMES = ("o_proj", "out_proj", "dense", "c_proj")
DOWN_NAMES = ("down_proj", "fc2", "c_proj", "dense_4h_to_h", "w2")


# -- the direction's edits -------------------------------------------------------------------------------------


def unit(direction: torch.Tensor) -> torch.Tensor:
    return direction / direction.norm()


def ablation(direction: torch.Tensor) -> Edit:
    """``x <- x - r^ r^T x``."""
    r_hat = unit(direction.float())

    def edit(x: torch.Tensor) -> torch.Tensor:
        r = r_hat.to(x.device, x.dtype)
        return x - (x @ r).unsqueeze(-1) * r

    return edit


def addition(direction: torch.Tensor, coefficient: float = 1.0) -> Edit:
    """``x <- x + coefficient r``."""

    def edit(x: torch.Tensor) -> torch.Tensor:
        return x + coefficient * direction.to(x.device, x.dtype)

    return edit


def ablation_edits(model: Any, direction: torch.Tensor) -> list[tuple[Site, Edit]]:
    """Directional ablation at ``resid_pre``, ``attn_out`` and ``mlp_out`` of every layer."""
    edit = ablation(direction)
    return [
        (Site(kind, layer), edit)
        for layer in range(layer_count(model))
        for kind in ("resid_pre", "attn_out", "mlp_out")
    ]


def addition_edits(layer: int, direction: torch.Tensor, coefficient: float = 1.0) -> list[tuple[Site, Edit]]:
    """Activation addition at ``resid_pre.layer``."""
    return [(Site("resid_pre", layer), addition(direction, coefficient))]


# -- scores ----------------------------------------------------------------------------------------------------


def refusal_token_ids(tokenizer: Any, strings: Sequence[str]) -> list[int]:
    """The first token of each string (deduplicated, in order)."""
    ids = []
    for text in strings:
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise UsageError(f"refusal token {text!r} tokenizes to nothing")
        ids.append(int(tokens[0]))
    return list(dict.fromkeys(ids))


def refusal_scores(logits: torch.Tensor, token_ids: Sequence[int]) -> torch.Tensor:
    """``log p - log(1 - p)``, ``p`` the total probability of ``token_ids``: ``logsumexp`` of their logits minus
    ``logsumexp`` of the others (exact, no epsilon)."""
    logits = logits.double()
    chosen = torch.zeros(logits.shape[-1], dtype=torch.bool)
    chosen[list(token_ids)] = True
    rest = logits.masked_fill(chosen, -math.inf)
    return torch.logsumexp(logits[:, chosen], -1) - torch.logsumexp(rest, -1)


def kl_divergence(base: torch.Tensor, edited: torch.Tensor) -> torch.Tensor:
    """``KL(p_base || p_edited)`` per row of next-token logits."""
    log_p, log_q = base.double().log_softmax(-1), edited.double().log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def mean_difference(harmful: dict[Site, torch.Tensor], harmless: dict[Site, torch.Tensor]) -> torch.Tensor:
    """Candidates ``[positions, layers, d]`` from ``{resid_pre.l: [n, positions, d]}`` of the two sets."""
    sites = sorted(harmful, key=lambda s: s.layer)
    return torch.stack([harmful[s].double().mean(0) - harmless[s].double().mean(0) for s in sites], dim=1).float()


# -- weight orthogonalisation ----------------------------------------------------------------------------------


def _writer(block: torch.nn.Module, names: tuple[str, ...]) -> torch.nn.Module:
    for name in names:
        found = getattr(block, name, None)
        if isinstance(found, torch.nn.Module):
            return found
    raise UsageError(f"{type(block).__name__}: no output projection named {' or '.join(names)}")


def _block(layer: torch.nn.Module, names: tuple[str, ...]) -> torch.nn.Module:
    for name in names:
        found = getattr(layer, name, None)
        if isinstance(found, torch.nn.Module):
            return found
    raise UsageError(f"{type(layer).__name__}: no block named {' or '.join(names)}")


@torch.no_grad()
def _project_out(module: torch.nn.Module, r_hat: torch.Tensor) -> None:
    """Remove ``r^`` from what ``module`` writes: Linear ``W [d, in] <- W - r^ r^T W`` (and its bias), GPT-2's
    Conv1D ``W [in, d] <- W - W r^ r^T``."""
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    r = r_hat.to(weight.device, torch.float64)
    w = weight.double()
    if isinstance(module, torch.nn.Linear):
        weight.copy_(w - torch.outer(r, r @ w))
    elif type(module).__name__ == "Conv1D":
        weight.copy_(w - torch.outer(w @ r, r))
    else:
        raise UsageError(f"cannot orthogonalise a {type(module).__name__} (Linear or Conv1D expected)")
    bias = getattr(module, "bias", None)
    if bias is not None:
        b = bias.double()
        bias.copy_(b - (b @ r) * r)


@torch.no_grad()
def orthogonalize(model: Any, direction: torch.Tensor) -> Any:
    """``W <- W - r^ r^T W`` for the embeddings and every attention/MLP output projection, in place; tied
    input/output embeddings are untied first (the unembedding keeps its weights)."""
    r_hat = unit(direction.double())
    inner = inner_model(model)
    embeddings = inner.get_input_embeddings()
    output = inner.get_output_embeddings()
    if output is not None and output.weight is embeddings.weight:
        output.weight = torch.nn.Parameter(embeddings.weight.detach().clone())
        inner.config.tie_word_embeddings = False
        text_config = getattr(inner.config, "get_text_config", lambda: None)()
        if text_config is not None:
            text_config.tie_word_embeddings = False
    w = embeddings.weight
    w.copy_(w.double() - torch.outer(w.double() @ r_hat.to(w.device), r_hat.to(w.device)))
    positions = getattr(getattr(inner, "transformer", None), "wpe", None)
    if isinstance(positions, torch.nn.Embedding):
        p = positions.weight
        p.copy_(p.double() - torch.outer(p.double() @ r_hat.to(p.device), r_hat.to(p.device)))
    for layer in decoder_layers(inner):
        _project_out(_writer(_block(layer, ATTENTION_NAMES), OUTPUT_NAMES), r_hat)
        _project_out(_writer(_block(layer, MLP_NAMES), DOWN_NAMES), r_hat)
    return model


def save_orthogonalized(model: Any, tokenizer: Any, direction: torch.Tensor, out: str | Path) -> Path:
    """Orthogonalise ``model`` in place and save it with its tokenizer as a plain safetensors checkpoint
    (written beside ``out``, then renamed into place)."""
    from tether.atomic import atomic_folder

    orthogonalize(model, direction)
    with atomic_folder(out) as tmp:
        inner_model(model).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(out)


# -- the direction file ----------------------------------------------------------------------------------------


def save_direction(path: str | Path, direction: torch.Tensor, meta: dict[str, Any]) -> Path:
    """``direction.safetensors``: tensor ``direction`` (``r``, not normalised), header ``meta`` (JSON: at least
    ``site``, where activation addition applies it)."""
    from safetensors.torch import save_file

    from tether.atomic import atomic_path
    from tether.jsonsafe import dumps

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(
            {"direction": direction.float().contiguous()},
            str(tmp),
            metadata={"kind": "direction", "meta": dumps(meta)},
        )
    return path


def load_direction(path: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
    from safetensors import safe_open

    from tether.errors import DataError

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            if "direction" not in handle.keys():  # noqa: SIM118
                raise DataError("no tensor 'direction' (write one with `tether interp refusal-direction`)", file=path)
            return handle.get_tensor("direction").float(), json.loads(header.get("meta", "{}"))
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"not a readable safetensors file ({err})", file=path) from None


# -- losses ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def completion_nll(
    model: Any,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    *,
    pad_id: int,
    edits: Sequence[tuple[Site, Edit]] = (),
    batch_size: int = 8,
) -> list[tuple[float, int]]:
    """(summed negative log-likelihood, token count) of each completion given its prompt, under ``edits``."""
    from tether.interp.activations import pad_left
    from tether.interp.hooks import editing

    device = next(model.parameters()).device
    out: list[tuple[float, int]] = []
    with editing(model, edits):
        for start in range(0, len(prompts), batch_size):
            chunk = list(zip(prompts[start : start + batch_size], completions[start : start + batch_size], strict=True))
            padded = pad_left([list(p) + list(c) for p, c in chunk], pad_id).to(device)
            logits = model(**padded.kwargs(), use_cache=False).logits
            width = padded.input_ids.shape[1]
            for row, (_, completion) in enumerate(chunk):
                n = len(completion)
                if n == 0:
                    out.append((0.0, 0))
                    continue
                targets = padded.input_ids[row, width - n :]
                logp = logits[row, width - n - 1 : width - 1].double().log_softmax(-1)
                out.append((float(-logp.gather(-1, targets[:, None]).sum()), n))
    return out


# -- rates ------------------------------------------------------------------------------------------------------


def refusal_rates(block: list[dict[str, Any]]) -> dict[str, Any]:
    """Refusal and any-refusal rates (with intervals) of judged answers, unscored ones counted apart."""
    from tether.judges.verdict import UNSCORED
    from tether.stats import rate

    scored = [r for r in block if r["verdict"]["label"] != UNSCORED]
    return {
        "n": len(block),
        "unscored": len(block) - len(scored),
        "refusal": rate([r["verdict"]["label"] == "refuses" for r in scored]).to_dict(),
        "any_refusal": rate([r["verdict"]["label"] in ("refuses", "partial") for r in scored]).to_dict(),
    }
