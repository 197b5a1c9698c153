"""Activation capture: run a causal LM over texts and stream the activations at chosen sites to an activation
store (:mod:`tether.interp.store`) in chunks of whole examples, within a memory budget.

Each batch runs once with reading hooks on the model's own modules (:mod:`tether.interp.hooks`; the logits
are unchanged, tested). A hook keeps only the stored token positions (every real token, or each text's last
one; padding never) in the store's dtype on the CPU, and the pass stops as soon as the last requested site has
fired (the layers above it and the unembedding are not computed). RAM holds one batch's kept activations plus
the writer's buffer. Texts are taken in order; a stopped capture keeps every finished batch and resumes after
the store's ``examples_done``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import torch
from rich.console import Console

from tether.atomic import atomic_write_json, atomic_write_text
from tether.config import dump_config
from tether.errors import UsageError
from tether.interp.config import InterpCaptureConfig
from tether.interp.encode import Batch, encode, forward_kwargs, load_inspected, pad
from tether.interp.hooks import hooked
from tether.interp.sites import Site, hidden_size, layer_count, parse_sites
from tether.interp.store import ActivationWriter, read_index
from tether.interp.texts import model_inputs, read_texts
from tether.report.progress import steps
from tether.runs.folders import check_run_folder, open_run_folder

KIND = "interp capture"
Positions = Literal["all", "last"]


class _Stop(Exception):
    """Raised by a hook once every site has fired: the rest of the forward pass is not needed."""


def last_token_mask(mask: torch.Tensor) -> torch.Tensor:
    """[batch, positions] bool: True at each row's last real token (left or right padding; none in an empty row)."""
    last = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)
    keep = torch.zeros_like(mask, dtype=torch.bool)
    keep[torch.arange(mask.shape[0]), last] = mask.any(1)
    return keep


@contextmanager
def collecting(
    model: Any, sites: Sequence[Site], keep: torch.Tensor, *, dtype: torch.dtype = torch.float32, stop: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Record each site's activation at the positions ``keep`` ([batch, positions] bool) as ``{"kind.layer":
    [n, d]}`` (rows in batch-then-position order, ``dtype``, on the CPU). With ``stop`` the forward pass raises
    :class:`_Stop` once every site has fired (the caller catches it)."""
    records: dict[str, torch.Tensor] = {}

    def keeper(name: str) -> Callable[[torch.Tensor], None]:
        def keep_it(activation: torch.Tensor) -> None:
            records[name] = activation[keep.to(activation.device)].detach().to(dtype).to("cpu")
            if stop and len(records) == len(sites):
                raise _Stop

        return keep_it

    with hooked(model, [(site, keeper(str(site))) for site in sites]):
        yield records


def _run_batch(
    model: Any, batch: Batch, keep: torch.Tensor, sites: Sequence[Site], dtype: torch.dtype, d_model: int
) -> dict[str, torch.Tensor]:
    if not keep.any():  # only empty texts: nothing to run
        return {str(s): torch.empty(0, d_model, dtype=dtype) for s in sites}
    with collecting(model, sites, keep, dtype=dtype, stop=True) as records, suppress(_Stop):
        model(**forward_kwargs(model, batch))
    missing = [str(s) for s in sites if str(s) not in records]
    if missing:
        raise UsageError(f"sites {', '.join(missing)} never fired in the forward pass of {type(model).__name__}")
    return records


def capture(
    model: Any,
    tokenizer: Any,
    inputs: Sequence[str],
    sites: Sequence[Site],
    writer: ActivationWriter,
    *,
    batch_size: int = 8,
    max_length: int = 512,
    positions: Positions = "all",
    skip_first: int = 0,
    console: Console | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Capture ``inputs[writer.examples_done:]`` into ``writer`` (not closed here; a stop flushes the finished
    batches first). Example ``i`` is ``inputs[i]``; its tokens are stored with columns ``example`` (i),
    ``position`` (among its real tokens) and ``token_id``; positions below ``skip_first`` are left out.
    Returns counts and speed of this call."""
    if positions not in ("all", "last"):
        raise UsageError(f"positions must be 'all' or 'last', not {positions!r}")
    if sorted(writer.sites) != sorted(str(s) for s in sites):
        raise UsageError(f"the store holds sites {', '.join(writer.sites)}, not {', '.join(map(str, sites))}")
    start = writer.examples_done
    if start > len(inputs):
        raise UsageError(f"the store already holds {start} examples but only {len(inputs)} texts are given")
    console = console or Console()
    d_model = writer.d_model
    tokens = truncated = 0
    began = time.perf_counter()
    try:
        with torch.inference_mode(), steps(console, KIND, len(inputs) - start, enabled=progress) as bar:
            for first in range(start, len(inputs), batch_size):
                texts = inputs[first : first + batch_size]
                ids = encode(tokenizer, texts)
                truncated += sum(len(i) > max_length for i in ids)
                batch = pad(tokenizer, [i[:max_length] for i in ids])
                mask = batch.mask
                keep = mask if positions == "all" else last_token_mask(mask)
                keep = keep & (batch.positions >= skip_first)
                records = _run_batch(model, batch, keep, sites, writer.dtype, d_model)
                examples = torch.arange(first, first + len(texts))[:, None].expand_as(mask)
                columns = {
                    "example": examples[keep],
                    "position": batch.positions[keep],
                    "token_id": batch.input_ids[keep],
                }
                writer.add(columns, records, examples=len(texts))
                tokens += int(mask.sum())
                bar.advance(len(texts))
    except BaseException:
        writer.flush()  # every finished batch is kept: a resume starts after it
        raise
    seconds = time.perf_counter() - began
    return {
        "examples_before": start,
        "examples_captured": len(inputs) - start,
        "tokens_read": tokens,
        "truncated": truncated,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
    }


def _check_resume(store: Path, identity: dict[str, Any]) -> None:
    if not (store / "index.json").is_file():
        return
    held = read_index(store).get("identity", {})
    changed = sorted(k for k in identity if held.get(k) != identity[k])
    if changed:
        what = ", ".join(f"{k} {held.get(k)!r} -> {identity[k]!r}" for k in changed)
        raise UsageError(f"--resume with other settings than the capture in {store.parent} ({what}); use another --out")


def run_capture(config: InterpCaptureConfig, *, console: Console | None = None) -> dict[str, Any]:
    """Run `tether interp capture`: texts and sites checked, then the model loaded and the texts captured into
    ``OUT/activations``; writes ``summary.json`` last."""
    console = console or Console()
    texts = read_texts(config.data, field=config.field, limit=config.limit)
    parse_sites(config.sites, 10**6)  # syntax now; the layer range once the model is loaded
    check_run_folder(config.out, KIND, resume=config.resume, overwrite=config.overwrite)
    model, tokenizer = load_inspected(
        config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code, revision=config.revision
    )
    sites = parse_sites(config.sites, layer_count(model))
    inputs = model_inputs(tokenizer, texts, chat=config.chat)
    identity = {
        "model": config.model,
        "revision": config.revision,
        "model_dtype": config.dtype,
        "data": str(config.data),
        "field": config.field,
        "chat": config.chat,
        "positions": config.positions,
        "skip_first": config.skip_first,
        "max_length": config.max_length,
        "activation_dtype": config.activation_dtype,
    }
    store = Path(config.out) / "activations"
    if config.resume:
        _check_resume(store, identity)
    out = open_run_folder(config.out, KIND, resume=config.resume, overwrite=config.overwrite)
    atomic_write_text(out / "config.yaml", dump_config(config))
    writer = ActivationWriter(
        store,
        [str(s) for s in sites],
        hidden_size(model),
        dtype=getattr(torch, config.activation_dtype),
        budget_bytes=int(config.memory_budget_mb * 2**20),
        meta={"identity": identity},
    )
    console.print(
        f"[bold]interp capture[/]: {len(texts)} texts ({writer.examples_done} done), {len(sites)} sites, "
        f"positions {config.positions}, model {config.model}",
        highlight=False,
    )
    speed = capture(
        model,
        tokenizer,
        inputs,
        sites,
        writer,
        batch_size=config.batch_size,
        max_length=config.max_length,
        positions=config.positions,
        skip_first=config.skip_first,
        console=console,
        progress=config.progress,
    )
    index = writer.close()
    summary = {
        "examples": index["examples_done"],
        "tokens": index["tokens"],
        "chunks": len(index["chunks"]),
        "sites": index["sites"],
        "d_model": index["d_model"],
        "dtype": index["dtype"],
        "store": str(store),
        **speed,
    }
    atomic_write_json(out / "summary.json", summary)
    console.print(
        f"{summary['tokens']} tokens of {summary['examples']} texts in {summary['chunks']} chunks: {store} "
        f"({speed['tokens_per_second']} tokens/s this run; {speed['truncated']} texts cut at {config.max_length})",
        highlight=False,
    )
    return summary
