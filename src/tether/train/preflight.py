"""The memory check every training command runs after validating its data and before loading any weights.

It estimates the run's peak (:mod:`tether.train.memory`) with and without gradient checkpointing and

- resolves ``gradient_checkpointing: auto``: on when the estimate without it exceeds the budget, or when
  it is at least :data:`CHECKPOINT_PAYS` times the estimate with it (activations dominate the peak, and
  recomputing them costs about a third more compute); off otherwise;
- refuses a run estimated above the budget with :class:`~tether.errors.MemoryBudgetError` (exit code 2),
  naming settings the estimator says would fit.

The budget is ``--memory-budget`` GB, by default :data:`BUDGET_SHARE` of the memory available when the
command starts (psutil), or of the GPU's memory on CUDA, split between the processes of a local
``accelerate launch``; ``--memory-budget 0`` turns the check off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from tether.config import RLOptions, TrainingConfig
from tether.errors import MemoryBudgetError
from tether.train.memory import GB, Estimate, Workload, estimate

CHECKPOINT_PAYS = 2.0
"""'auto' checkpointing turns on when it at least halves the estimated peak."""

BUDGET_SHARE = 0.9
"""Share of the available memory a run may use by default (the rest: the OS, other processes, error)."""

TrainingCommand = TrainingConfig | RLOptions
"""The configs the check runs on: every offline training command and online RL."""
C = TypeVar("C", bound=TrainingCommand)
Build = Callable[[C], Workload | None]
"""A command's workload for a config (None when the model's config.json cannot be read)."""


def _updated(config: C, **update: Any) -> C:
    """``config`` with ``update``'s fields replaced (pydantic's ``model_copy``: the same class, not re-validated)."""
    return cast(C, config.model_copy(update=update))


def default_budget() -> tuple[float, str]:
    """(bytes, how they were chosen) for this process."""
    import torch

    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        return BUDGET_SHARE * total, f"{BUDGET_SHARE:.0%} of the GPU's {total / GB:.1f} GB"
    import psutil

    available = psutil.virtual_memory().available
    share = f" shared by {processes} processes" if processes > 1 else ""
    return BUDGET_SHARE * available / processes, f"{BUDGET_SHARE:.0%} of the {available / GB:.1f} GB available{share}"


def budget_of(config: TrainingCommand) -> tuple[float | None, str]:
    if config.memory_budget == 0:
        return None, "check off"
    if config.memory_budget is not None:
        return config.memory_budget * GB, "--memory-budget"
    return default_budget()


def resolve(config: C, build: Build[C], budget: float | None) -> tuple[bool, Estimate | None, Estimate | None]:
    """(checkpointing, the estimate with that choice, the estimate without checkpointing)."""
    setting = config.gradient_checkpointing
    off = build(_updated(config, gradient_checkpointing=False))
    if off is None:
        return setting is True, None, None
    on = build(_updated(config, gradient_checkpointing=True))
    assert on is not None, "a build that reads the shape for one setting reads it for both"
    without, with_it = estimate(off), estimate(on)
    if setting == "auto":
        setting = (budget is not None and without.total > budget) or without.total >= CHECKPOINT_PAYS * with_it.total
    return bool(setting), with_it if setting else without, without


def _candidates(config: TrainingCommand) -> list[tuple[str, dict[str, Any]]]:
    """Single changes to try, most preferred first: (flags, config update)."""
    out: list[tuple[str, dict[str, Any]]] = []
    if config.gradient_checkpointing is False:
        out.append(("--gradient-checkpointing", {"gradient_checkpointing": True}))
    if config.mixed_precision == "no" and config.dtype == "float32":
        out.append(("--mixed-precision bf16", {"mixed_precision": "bf16"}))
    if not config.lora:
        out.append(("--lora", {"lora": True}))
    sizes: dict[str, int]
    if isinstance(config, TrainingConfig):
        b = config.batch_size
        while b > 1:
            b //= 2
            accum = config.grad_accum * config.batch_size // b
            out.append((f"--batch-size {b} --grad-accum {accum}", {"batch_size": b, "grad_accum": accum}))
        sizes = {"max_length": config.max_length}
    else:
        sizes = {"minibatch_size": config.minibatch_size, "rollout_batch_size": config.rollout_batch_size}
        sizes["max_prompt_length"] = config.max_prompt_length
    for name, value in sizes.items():
        floor = 64 if name.startswith("max_") else 1
        while value > floor:
            value //= 2
            out.append((f"--{name.replace('_', '-')} {value}", {name: value}))
    return out


def suggestions(config: C, build: Build[C], budget: float) -> str:
    """Flags that would fit in ``budget``: each single change that fits (the mildest of a kind), else the
    first combination of changes, in order, that does."""
    fitting: list[str] = []
    kinds: set[str] = set()
    for flags, update in _candidates(config):
        kind = flags.split()[0]
        if kind in kinds:
            continue
        _, est, _ = resolve(_updated(config, **update), build, budget)
        if est is not None and est.total <= budget:
            fitting.append(f"{flags} ({est.total / GB:.1f} GB)")
            kinds.add(kind)
    if fitting:
        return "would fit: " + "; or ".join(fitting[:4])
    combined, flags_so_far = config, list[str]()
    est = None
    for flags, update in _candidates(config):
        if any(flags.split()[0] == f.split()[0] for f in flags_so_far):
            flags_so_far = [f for f in flags_so_far if f.split()[0] != flags.split()[0]]
        combined = _updated(combined, **update)
        flags_so_far.append(flags)
        _, est, _ = resolve(combined, build, budget)
        if est is not None and est.total <= budget:
            return f"would fit: {' '.join(flags_so_far)} ({est.total / GB:.1f} GB)"
    smallest = f"{est.total / GB:.1f} GB" if est is not None else "unknown"
    return f"nothing tried fits (the smallest estimate, with {' '.join(flags_so_far)}, is {smallest})"


def check_memory(config: C, build: Build[C], *, console: Any = None) -> C:
    """Resolve 'auto' checkpointing and refuse a run that would not fit; returns the config with
    ``gradient_checkpointing`` set to the decision (so the saved config says what ran)."""
    budget, how = budget_of(config)
    checkpointing, chosen, without = resolve(config, build, budget)
    resolved = _updated(config, gradient_checkpointing=checkpointing)
    if chosen is None:
        return resolved
    if budget is not None and chosen.total > budget:
        raise MemoryBudgetError(
            f"estimated peak memory {chosen.total / GB:.1f} GB exceeds the budget of {budget / GB:.1f} GB "
            f"({how}); {suggestions(config, build, budget)}. Estimate: {chosen.describe()}. "
            "--memory-budget GB sets the budget (0 turns the check off)."
        )
    if console is not None:
        limit = f" of a {budget / GB:.1f} GB budget ({how})" if budget is not None else ""
        why = ""
        if checkpointing and config.gradient_checkpointing == "auto" and without is not None:
            why = f"; gradient checkpointing on (auto: {without.total / GB:.1f} GB without it)"
        console.print(f"memory: estimated peak {chosen.total / GB:.1f} GB{limit}{why}")
    return resolved
