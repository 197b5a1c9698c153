"""SAEs on disk in SAELens's format: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

``SAE.load_from_disk(folder)`` of sae-lens 6 loads what :func:`save_sae` writes (tested against it when
sae_lens is installed). The weights are ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc``,
``b_dec`` and, for JumpReLU, ``threshold [d_sae]``; the architecture names are SAELens's:

==============  ==============  =======================================================
tether          cfg.json        note
==============  ==============  =======================================================
``relu``        ``standard``
``topk``        ``topk``        ``k``; ``rescale_acts_by_decoder_norm`` false
``batchtopk``   ``jumprelu``    its inference form, the threshold repeated per latent
                                (SAELens saves BatchTopK SAEs the same way)
``jumprelu``    ``jumprelu``
==============  ==============  =======================================================

An input scale used in training (``x * scale``) is folded into the weights first, as SAELens folds its
``expected_average_only_in`` factor: ``W_enc * scale``, ``W_dec / scale``, ``b_dec / scale``, so the
saved SAE reads raw activations. ``metadata`` holds the site both as TransformerLens names it
(``hook_name``, ``blocks.3.hook_resid_post``) and as tether does (``tether_site``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from tether.atomic import temp_name
from tether.errors import DataError
from tether.interp.sae.architectures import SparseAutoencoder

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
FORMAT_VERSION = "6.0.0"
"""Written as ``metadata.sae_lens_version``: the config layout of SAELens 6 (older layouts are converted on
load by SAELens, which this key tells apart)."""
SAELENS_NAME = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}
TL_KIND = {"resid_pre": "hook_resid_pre", "resid_post": "hook_resid_post", "attn_out": "hook_attn_out"}
TL_KIND["mlp_out"] = "hook_mlp_out"


def hook_name(site: str) -> str:
    """``resid_post.3`` -> ``blocks.3.hook_resid_post`` (TransformerLens's name, which SAELens records)."""
    kind, _, layer = site.partition(".")
    return f"blocks.{layer}.{TL_KIND[kind]}" if kind in TL_KIND else site


def site_of_hook(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "blocks":
        for kind, hook in TL_KIND.items():
            if parts[2] == hook:
                return f"{kind}.{parts[1]}"
    return None


@torch.no_grad()
def inference_weights(sae: SparseAutoencoder, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """The SAELens state dict of ``sae`` with ``scale`` folded in."""
    weights = {
        "W_enc": sae.W_enc * scale,
        "b_enc": sae.b_enc.clone(),
        "W_dec": sae.W_dec / scale,
        "b_dec": sae.b_dec / scale,
    }
    if sae.architecture in ("jumprelu", "batchtopk"):
        weights["threshold"] = sae.threshold.clamp(min=0).expand(sae.d_sae).clone()
    return {k: v.detach().float().contiguous() for k, v in weights.items()}


def save_sae(
    folder: str | Path, sae: SparseAutoencoder, *, scale: float = 1.0, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``sae`` in SAELens's format; the folder is replaced as a whole (written beside it, then renamed)."""
    from safetensors.torch import save_file

    from tether import __version__

    folder = Path(folder)
    meta = {"sae_lens_version": FORMAT_VERSION, "tether_version": __version__, **(metadata or {})}
    meta["tether_architecture"] = sae.architecture
    if sae.architecture in ("topk", "batchtopk"):
        meta["tether_k"] = sae.k
    if "tether_site" in meta:
        meta.setdefault("hook_name", hook_name(meta["tether_site"]))
    cfg: dict[str, Any] = {
        "architecture": SAELENS_NAME[sae.architecture],
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": meta,
    }
    if sae.architecture == "topk":
        cfg |= {"k": int(sae.k), "rescale_acts_by_decoder_norm": False}
    tmp = temp_name(folder)
    tmp.mkdir(parents=True)
    try:
        save_file(inference_weights(sae, scale), str(tmp / WEIGHTS))
        (tmp / CFG).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def read_cfg(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CFG
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"not an SAE folder (no {CFG}; expected SAELens's cfg.json and {WEIGHTS})", file=folder
        ) from None
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON ({err.msg})", file=path, line=err.lineno) from None
    if not isinstance(cfg, dict):
        raise DataError("expected a JSON object", file=path)
    for key in ("architecture", "d_in", "d_sae"):
        if key not in cfg:
            raise DataError("missing", file=path, field=key)
    return cfg


def load_sae(folder: str | Path) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """An SAE in SAELens's format (written by tether or by SAELens) and its ``cfg.json``; architectures
    ``standard``, ``topk`` and ``jumprelu`` (a tether BatchTopK SAE comes back as BatchTopK, keeping k)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = read_cfg(folder)
    meta = cfg.get("metadata") or {}
    name = cfg["architecture"]
    if name not in ("standard", "topk", "jumprelu"):
        raise DataError(
            f"architecture {name!r} is not supported (standard, topk, jumprelu)",
            file=folder / CFG,
            field="architecture",
        )
    if cfg.get("normalize_activations", "none") != "none" or cfg.get("reshape_activations", "none") != "none":
        raise DataError("only SAEs with normalize_activations and reshape_activations 'none' load", file=folder / CFG)
    architecture = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}[name]
    k: float = cfg.get("k", 32)
    if name == "jumprelu" and meta.get("tether_architecture") == "batchtopk":
        architecture, k = "batchtopk", meta.get("tether_k", k)
    try:
        weights = load_file(str(folder / WEIGHTS))
    except (OSError, RuntimeError) as err:
        raise DataError(f"unreadable weights ({err})", file=folder / WEIGHTS) from None
    sae = SparseAutoencoder(int(cfg["d_in"]), int(cfg["d_sae"]), architecture, k=k)  # type: ignore[arg-type]
    expected = {
        "W_enc": (sae.d_in, sae.d_sae),
        "W_dec": (sae.d_sae, sae.d_in),
        "b_enc": (sae.d_sae,),
        "b_dec": (sae.d_in,),
    }
    if name == "jumprelu":
        expected["threshold"] = (sae.d_sae,)
    with torch.no_grad():
        for key, shape in expected.items():
            if key not in weights or tuple(weights[key].shape) != shape:
                got = tuple(weights[key].shape) if key in weights else "missing"
                raise DataError(f"expected shape {shape}, got {got}", file=folder / WEIGHTS, field=key)
            if key == "threshold" and architecture == "batchtopk":
                sae.threshold.copy_(weights[key].float().max())
                sae.threshold_ready.fill_(True)
            else:
                getattr(sae, key).copy_(weights[key].float())
        if name == "topk" and cfg.get("rescale_acts_by_decoder_norm"):
            # SAELens's z * ||W_dec,i|| and f / ||W_dec,i||, folded: the same encode and decode
            norms = sae.W_dec.norm(dim=1).clamp(min=1e-8)
            sae.W_enc.data.mul_(norms)
            sae.b_enc.data.mul_(norms)
            sae.W_dec.data.div_(norms.unsqueeze(1))
        if not cfg.get("apply_b_dec_to_input", True):
            sae.b_enc.data.add_(sae.b_dec @ sae.W_enc)  # x W_enc + b_enc = (x - b_dec) W_enc + (b_enc + b_dec W_enc)
    return sae, cfg
