"""Reference log-probs: computed once before training, cached on disk, never held as a second model.

Every reference-based loss needs ``log pi_ref(y | x)`` summed over each completion. The reference never
changes, so tether scores every training sequence once (no gradients, eval mode) before the first
optimizer step and keeps only the numbers (4 bytes per sequence). By default the reference *is* the
starting policy: with a fresh LoRA it is the base model with the adapters disabled (peft's
``disable_adapter``), otherwise the policy's own weights before step 1, so no second copy of the
model is ever loaded. ``--ref-model`` loads another model just for this pass and frees it afterwards.

The numbers are cached in ``$TETHER_HOME/cache/reference/<key>.safetensors`` (or
``$TETHER_REFERENCE_CACHE``). The key is a SHA-256 of the reference model's identity (resolved path or
hub id and revision, dtype, and the name, size and modification time of each file in its folder) and
of every scored token id, so a changed model, tokenizer, template, truncation or dataset is a cache
miss, never a stale hit.

Under ``accelerate launch`` each process scores every ``world``-th sequence and the shards are gathered,
so every process ends with the full table.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tether.atomic import atomic_path
from tether.data.batching import collate
from tether.data.tokenization import TokenizedExample
from tether.paths import tether_home
from tether.train.logprobs import sequence_logprobs

_WEIGHT_SUFFIXES = (".safetensors", ".json", ".bin", ".model", ".gguf", ".txt")


CACHE_ENV = "TETHER_REFERENCE_CACHE"
"""Overrides the cache folder (default ``$TETHER_HOME/cache/reference``)."""


def reference_cache_dir() -> Path:
    path = Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else tether_home() / "cache" / "reference"
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_fingerprint(spec: str, *, revision: str | None = None, dtype: str = "float32") -> dict[str, Any]:
    """What identifies a model's weights without reading them: path or hub id, revision, dtype, files."""
    from tether.models.loading import adapter_base, resolve

    source = resolve(spec)
    fingerprint: dict[str, Any] = {"source": source, "revision": revision, "dtype": dtype, "files": []}
    folder = Path(source)
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix in _WEIGHT_SUFFIXES:
                stat = path.stat()
                fingerprint["files"].append([path.name, stat.st_size, stat.st_mtime_ns])
        base = adapter_base(source)
        if base is not None:
            fingerprint["base"] = model_fingerprint(base, dtype=dtype)
    return fingerprint


def cache_key(fingerprint: dict[str, Any], examples: Sequence[TokenizedExample]) -> str:
    """SHA-256 over the model fingerprint and every example's token ids and labels."""
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode())
    for example in examples:
        digest.update(json.dumps([example.input_ids, example.labels]).encode())
    return digest.hexdigest()[:32]


@torch.no_grad()
def score_examples(
    model: Any,
    examples: Sequence[TokenizedExample],
    *,
    pad_id: int,
    batch_size: int = 16,
    accelerator: Any = None,
    disable_adapters: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Summed log-prob of the labelled tokens of each example, ``[N]`` float32, in the given order.

    ``disable_adapters`` scores a peft model's base weights. Under an ``accelerator`` with mixed precision
    the scoring runs in the same autocast as training, so that the reference carries the policy's rounding
    (up to the effect of other batch shapes).
    Examples are sorted by length so that batches pad little; with an ``accelerator`` the work is split
    across its processes.
    """
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    device = accelerator.device if accelerator else next(model.parameters()).device
    mine = sorted(range(rank, len(examples), world), key=lambda i: len(examples[i]))
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    from tether.report.progress import track  # a bar on a terminal, a line every tenth in a log file

    iterator = track(batches, "reference log-probs", enabled=progress)
    was_training = model.training
    model.eval()
    scores: dict[int, float] = {}
    context = model.disable_adapter() if disable_adapters else nullcontext()
    autocast = accelerator.autocast() if accelerator else nullcontext()
    try:
        with context, autocast:
            for batch in iterator:
                inputs = {k: v.to(device) for k, v in collate([examples[i] for i in batch], pad_id).items()}
                sums, _ = sequence_logprobs(model, inputs)
                scores.update(zip(batch, sums.float().cpu().tolist(), strict=True))
    finally:
        model.train(was_training)
    if world > 1:
        from accelerate.utils import gather_object

        for part in gather_object([scores]):
            scores.update(part)
    return torch.tensor([scores[i] for i in range(len(examples))], dtype=torch.float32)


def cached_scores(key: str, compute: Any, *, enabled: bool = True, is_main: bool = True, barrier: Any = None):
    """Scores from ``<cache>/<key>.safetensors`` when present, else ``compute()`` (and save them).

    Returns ``(scores, hit)``. Only the main process writes, atomically (:func:`tether.atomic.atomic_path`).
    """
    path = reference_cache_dir() / f"{key}.safetensors"
    if enabled and path.is_file():
        return load_file(str(path))["logps"], True
    scores = compute()
    if enabled and is_main:
        with atomic_path(path) as tmp:
            save_file({"logps": scores.contiguous()}, str(tmp))
    if barrier is not None:
        barrier()
    return scores, False
