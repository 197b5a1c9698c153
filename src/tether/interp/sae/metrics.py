"""How good an SAE is: reconstruction and sparsity on held-out activations, and CE loss recovered in the model.

Over N held-out tokens ``x`` (rows) with reconstructions ``x_hat`` and latent activations ``f``:

- ``explained_variance = 1 - sum_t ||x_t - x_hat_t||^2 / sum_t ||x_t - mean(x)||^2`` (``mean`` over the
  same tokens; the sums run over tokens and dimensions, in float64);
- ``mse = sum_t ||x_t - x_hat_t||^2 / (N d_in)`` (per element); ``mse_per_token`` is ``N d_in`` times less
  divided, the training loss's ``||x - x_hat||^2``;
- ``l0`` = mean number of latents with ``f != 0`` per token;
- ``dead`` = latents never active on these tokens; ``dense`` = latents active on more than 10% of them;
- ``ce_loss_recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean)``: the model's next-token
  cross-entropy with the site's activation replaced by the SAE's reconstruction (spliced, through
  :func:`tether.interp.hooks.editing`), by zeros (zero ablation), and untouched (clean). 1 means the
  reconstruction loses nothing the model uses, 0 that it is as bad as deleting the activation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from tether.errors import DataError, UsageError
from tether.interp.sae.architectures import SparseAutoencoder
from tether.interp.sae.config import SaeEvalConfig
from tether.interp.sae.saelens import CFG, load_sae, site_of_hook
from tether.interp.store import ActivationStore

DENSE = 0.1


class ReconstructionStats:
    """Running sums for the metrics of the module docstring."""

    def __init__(self, d_in: int, d_sae: int) -> None:
        self.tokens = 0
        self.sq_error = 0.0
        self.sum_x = torch.zeros(d_in, dtype=torch.float64)
        self.sum_sq = 0.0
        self.active = 0
        self.counts = torch.zeros(d_sae, dtype=torch.int64)

    def update(self, x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor) -> None:
        x64 = x.double()
        self.tokens += x.shape[0]
        self.sq_error += float((x64 - x_hat.double()).pow(2).sum())
        self.sum_x += x64.sum(0)
        self.sum_sq += float(x64.pow(2).sum())
        on = f != 0
        self.active += int(on.sum())
        self.counts += on.sum(0)

    def result(self) -> dict[str, Any]:
        n = max(self.tokens, 1)
        # sum ||x - mean||^2 = sum ||x||^2 - N ||mean||^2
        total = self.sum_sq - float(self.sum_x.pow(2).sum()) / n
        density = self.counts.double() / n
        return {
            "tokens": self.tokens,
            "explained_variance": 1 - self.sq_error / total if total > 0 else None,
            "mse": self.sq_error / (n * self.sum_x.numel()),
            "mse_per_token": self.sq_error / n,
            "l0": self.active / n,
            "dead": int((self.counts == 0).sum()),
            "dense": int((density > DENSE).sum()),
            "d_sae": int(self.counts.numel()),
        }


def store_batches(store: ActivationStore, site: str, batch_size: int, limit: int | None) -> Iterator[torch.Tensor]:
    """The store's ``site`` in capture order, ``batch_size`` tokens at a time, at most ``limit`` tokens."""
    seen = 0
    for chunk in store.chunks(site):
        x = chunk[site].float()
        for start in range(0, x.shape[0], batch_size):
            if limit is not None and seen >= limit:
                return
            part = x[start : start + batch_size]
            if limit is not None:
                part = part[: limit - seen]
            seen += part.shape[0]
            yield part


@torch.no_grad()
def reconstruction_metrics(sae: SparseAutoencoder, batches: Iterator[torch.Tensor]) -> dict[str, Any]:
    stats = ReconstructionStats(sae.d_in, sae.d_sae)
    for x in batches:
        f = sae.encode(x)
        stats.update(x, sae.decode(f), f)
    return stats.result()


@torch.no_grad()
def mean_cross_entropy(model: Any, batches: Sequence[dict[str, torch.Tensor]]) -> float:
    """Mean next-token cross-entropy over the non-padding positions of tokenized ``batches``."""
    total, count = 0.0, 0
    for batch in batches:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        targets = batch["input_ids"][:, 1:]
        keep = batch["attention_mask"][:, 1:].bool() & batch["attention_mask"][:, :-1].bool()
        losses = torch.nn.functional.cross_entropy(logits[:, :-1][keep].float(), targets[keep], reduction="sum")
        total += float(losses)
        count += int(keep.sum())
    return total / max(count, 1)


def ce_loss_recovered(
    model: Any,
    batches: Sequence[dict[str, torch.Tensor]],
    site: Any,
    reconstruct: Callable[[torch.Tensor], torch.Tensor],
    *,
    skip_first: int = 0,
) -> dict[str, float | None]:
    """CE clean, spliced (``reconstruct`` of the site's activation) and zero-ablated, and the share recovered.

    Positions below ``skip_first`` (those the SAE's capture left out, such as the attention sink) keep their
    own activation in both edits."""
    from tether.interp.hooks import editing

    def spliced(activation: torch.Tensor) -> torch.Tensor:
        out = activation.clone()
        part = activation[:, skip_first:]
        shape = part.shape
        out[:, skip_first:] = reconstruct(part.reshape(-1, shape[-1]).float()).reshape(shape).to(activation.dtype)
        return out

    def zeroed(activation: torch.Tensor) -> torch.Tensor:
        out = activation.clone()
        out[:, skip_first:] = 0
        return out

    clean = mean_cross_entropy(model, batches)
    with editing(model, [(site, spliced)]):
        with_sae = mean_cross_entropy(model, batches)
    with editing(model, [(site, zeroed)]):
        zero = mean_cross_entropy(model, batches)
    gap = zero - clean
    return {
        "ce_clean": clean,
        "ce_spliced": with_sae,
        "ce_zero_ablation": zero,
        "ce_loss_recovered": (zero - with_sae) / gap if gap != 0 else None,
    }


def sae_folder(path: str | Path) -> Path:
    """The SAE folder of ``path``: itself, or the ``sae/`` of a `tether sae train` run."""
    path = Path(path)
    if (path / CFG).is_file():
        return path
    if (path / "sae" / CFG).is_file():
        return path / "sae"
    raise DataError(
        f"no SAE here (expected {CFG} and sae_weights.safetensors, or a finished `tether sae train` run)", file=path
    )


def resolve_site(store: ActivationStore, cfg: dict[str, Any], site: str | None) -> str:
    meta = cfg.get("metadata") or {}
    wanted = site or meta.get("tether_site") or site_of_hook(str(meta.get("hook_name") or ""))
    if wanted is None:
        if len(store.sites) != 1:
            raise UsageError(f"{store.folder} holds sites {', '.join(store.sites)}: pass --site")
        wanted = store.sites[0]
    if wanted not in store.sites:
        raise DataError(f"has no site {wanted!r} (it holds {', '.join(store.sites)}); pass --site", file=store.folder)
    return str(wanted)


def tokenized(tokenizer: Any, texts: list[str], batch_size: int, max_length: int) -> list[dict[str, torch.Tensor]]:
    tokenizer.padding_side = "right"
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size], return_tensors="pt", padding=True, truncation=True, max_length=max_length
        )
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return out


def run_sae_eval(config: SaeEvalConfig, *, console: Any) -> dict[str, Any]:
    """The metrics of the module docstring for one SAE; printed, returned and written to --output."""
    from tether.atomic import atomic_write_json
    from tether.runs.folders import check_output_file

    if config.output is not None:
        check_output_file(config.output)
    folder = sae_folder(config.sae)
    sae, cfg = load_sae(folder)
    store = ActivationStore(config.activations)
    site = resolve_site(store, cfg, config.site)
    if store.d_model != sae.d_in:
        raise DataError(f"site {site} has width {store.d_model}, the SAE reads {sae.d_in}", file=store.folder)
    texts = None
    if config.data is not None:
        from tether.interp.texts import read_texts

        texts = read_texts(config.data, limit=config.limit)
    result: dict[str, Any] = {"sae": str(folder), "architecture": cfg["architecture"], "site": site}
    result |= reconstruction_metrics(sae, store_batches(store, site, config.batch_size, config.tokens))
    if texts is not None:
        from tether.interp.sites import layer_count, parse_site
        from tether.interp.texts import model_inputs
        from tether.models.loading import load_model, load_tokenizer

        spec = config.model or (cfg.get("metadata") or {}).get("model_name") or store.model
        if not spec:
            raise UsageError("--data needs --model (neither the SAE nor the store records one)")
        tokenizer = load_tokenizer(spec, trust_remote_code=config.trust_remote_code, revision=config.revision)
        model = load_model(
            spec, dtype=config.dtype, trust_remote_code=config.trust_remote_code, revision=config.revision
        ).eval()
        batches = tokenized(tokenizer, model_inputs(tokenizer, texts), config.text_batch_size, config.max_length)
        with torch.no_grad():
            captured = store.index.get("identity", {}).get("skip_first", 0)
            skip = config.skip_first if config.skip_first is not None else captured
            result |= {"model": spec, "texts": len(texts), "skip_first": skip}
            result |= ce_loss_recovered(model, batches, parse_site(site, layer_count(model)), sae, skip_first=skip)
    if config.output is not None:
        atomic_write_json(config.output, result)
    if console is not None:
        shown = ("explained_variance", "mse", "l0", "dead", "dense", "ce_loss_recovered")
        console.print(
            "sae eval: " + ", ".join(f"{k} {result[k]:.4g}" for k in shown if result.get(k) is not None),
            highlight=False,
        )
    return result
