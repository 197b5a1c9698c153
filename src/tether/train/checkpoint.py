"""Atomic, pickle-free training checkpoints.

A checkpoint folder ``step-00000010`` holds:

- ``trainable.safetensors``: every parameter that requires grad (all weights, or only the LoRA ones);
- ``optimizer.safetensors`` + ``optimizer.json``: optimizer state tensors and the JSON rest;
- ``scheduler.json``: the learning-rate scheduler's state;
- ``rng-<rank>.safetensors`` + ``rng-<rank>.json``: Python, NumPy and torch RNG states per process;
- ``state.json``: step, epoch and position in the epoch's batch plan (written last).

Everything is written into a hidden temporary folder and renamed into place, so a crash while saving
never leaves a half-written checkpoint; nothing is loaded with pickle. A checkpoint damaged afterwards
(a truncated or corrupted file) is read in full before anything is restored, and :func:`resume_latest`
then falls back to the previous one, saying so.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tether.atomic import replace_folder
from tether.errors import TetherError

PREFIX = "step-"


@dataclass
class LoopState:
    """Where a run is: optimizer steps done, epoch, micro-batches consumed in that epoch."""

    step: int = 0
    epoch: int = 0
    micro_index: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    world_size: int = 1
    grad_accum: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    """JSON state of a recipe's own stateful objects (e.g. BCO's running reward mean)."""


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(root: Path) -> Path | None:
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


# -- optimizer state <-> (tensors, json) -------------------------------------------------------------
def _split_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    rest: dict[str, Any] = {"param_groups": state_dict["param_groups"], "state": {}}
    for index, values in state_dict["state"].items():
        scalars = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[key] = value
        rest["state"][str(index)] = scalars
    return tensors, rest


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in rest["state"].items()}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": rest["param_groups"]}


# -- RNG ---------------------------------------------------------------------------------------------
def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))  # MT19937: (name, keys, pos, gauss...)
    tensors = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64))}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    meta = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


# -- save / load --------------------------------------------------------------------------------------
def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    root: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: LoopState,
    rank: int,
    is_main: bool,
    barrier: Any = lambda: None,
    keep: int | None = None,
) -> Path:
    """Write a checkpoint for ``state.step`` atomically; every process calls this (RNG is per rank)."""
    final = root / f"{PREFIX}{state.step:08d}"
    tmp = root / f".tmp-{PREFIX}{state.step:08d}"
    if is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    barrier()
    rng_tensors, rng_meta = _rng_state()
    save_file(rng_tensors, str(tmp / f"rng-{rank}.safetensors"))
    (tmp / f"rng-{rank}.json").write_text(json.dumps(rng_meta))
    if is_main:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        opt_tensors, opt_rest = _split_optimizer(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(opt_rest))
        (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
    barrier()
    if is_main:
        (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2))
        replace_folder(tmp, final)
        if keep is not None:
            for old in checkpoint_dirs(root)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


class DamagedCheckpoint(TetherError):
    """A checkpoint file that cannot be read (truncated, corrupted or missing)."""


@dataclass
class _Saved:
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: tuple[dict[str, torch.Tensor], dict[str, Any]] | None
    state: LoopState


def _read(path: Path, rank: int) -> _Saved:
    """Every file of a checkpoint, read and parsed before anything is restored."""
    current = path
    try:
        current = path / "trainable.safetensors"
        weights = load_file(str(current))
        current = path / "optimizer.safetensors"
        optimizer_tensors = load_file(str(current))
        current = path / "optimizer.json"
        optimizer = _join_optimizer(optimizer_tensors, json.loads(current.read_text()))
        current = path / "scheduler.json"
        scheduler = json.loads(current.read_text())
        current = path / f"rng-{rank}.safetensors"
        rng = None
        if current.is_file():
            rng_tensors = load_file(str(current))
            current = path / f"rng-{rank}.json"
            rng = (rng_tensors, json.loads(current.read_text()))
        current = path / "state.json"
        state = LoopState(**json.loads(current.read_text()))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        raise DamagedCheckpoint(f"{current} cannot be read ({reason})") from None
    return _Saved(weights, optimizer, scheduler, rng, state)


def load_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rank: int,
) -> LoopState:
    """Restore weights, optimizer, scheduler and this process's RNG; returns the saved loop state.

    Raises :class:`DamagedCheckpoint` (nothing restored) when a file cannot be read."""
    saved = _read(path, rank)
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in saved.weights]
    unknown = [n for n in saved.weights if n not in params]
    if missing or unknown:
        raise TetherError(
            f"checkpoint {path} does not match the model being trained "
            f"(missing {missing[:3]}, unexpected {unknown[:3]}); was it written with other options?"
        )
    with torch.no_grad():
        for name, tensor in saved.weights.items():
            params[name].copy_(tensor)
    optimizer.load_state_dict(saved.optimizer)
    scheduler.load_state_dict(saved.scheduler)
    if saved.rng is not None:
        _set_rng_state(*saved.rng)
    return saved.state


def _print_note(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[yellow]note[/]: {message}", highlight=False, soft_wrap=True)


def resume_latest(
    root: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rank: int,
    quiet: bool = False,
) -> tuple[Path, LoopState]:
    """Restore the newest checkpoint under ``root`` that can be read; damaged ones are skipped with a note
    on stderr (unless ``quiet``: the other processes). Raises a one-line :class:`TetherError` when none
    is left."""
    candidates = checkpoint_dirs(root)
    if not candidates:
        raise TetherError(f"--resume: no checkpoint in {root}; start without --resume")
    damaged = []
    for path in reversed(candidates):
        try:
            state = load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, rank=rank)
        except DamagedCheckpoint as err:
            damaged.append(str(err))
            continue
        if damaged and not quiet:
            skipped = "; ".join(damaged)
            _print_note(f"skipped damaged checkpoint(s): {skipped}; resuming from {path} (step {state.step})")
        return path, state
    raise TetherError(f"--resume: no checkpoint in {root} can be read: {'; '.join(damaged)}")
