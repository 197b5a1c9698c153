"""The one training loop every recipe shares (composition, no Trainer subclass).

A recipe hands the loop a model, a list of examples, a collate function, a ``loss_fn`` that returns
the *sum* of per-unit losses in a micro-batch, and ``count_units`` that counts a micro-batch's units
(tokens for SFT, pairs for preference losses). The loop normalises by the units of the whole optimizer step across all
micro-batches and processes, so gradient accumulation and data parallelism give the same update as one
big batch:

    loss = sum_{micro, process} loss_sum / sum_{micro, process} units

Each process takes every ``world``-th micro-batch of the epoch's batch plan; an optimizer step consumes
``grad_accum`` of them, and micro-batches left over at the end of an epoch (fewer than one step's worth)
are skipped. It runs on ``accelerate`` (plain CPU, one GPU, or ``accelerate launch`` for DDP/FSDP/DeepSpeed), clips
gradients, follows a warm-up + decay schedule, stops on a NaN/inf loss or gradient keeping the last
good checkpoint, writes metrics to ``metrics.jsonl`` (and to TensorBoard/W&B via accelerate trackers),
saves atomic checkpoints and resumes from them exactly.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tether.atomic import atomic_write_text
from tether.config import TrainingConfig
from tether.data.batching import BatchPlan
from tether.data.tokenization import IGNORE_INDEX
from tether.errors import TetherError, TrainingDiverged
from tether.jsonsafe import dumps
from tether.train.checkpoint import LoopState, latest_checkpoint, resume_latest, save_checkpoint

if TYPE_CHECKING:
    from rich.progress import Progress

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]
"""(model, batch) -> (sum of the per-unit losses of the micro-batch, extra metrics as floats)."""

STEP_DELAY_ENV = "TETHER_DEBUG_STEP_DELAY"
"""Seconds to sleep after every optimizer step; only for tests that interrupt a run."""

GRADS_DIR_ENV = "TETHER_DEBUG_GRADS_DIR"
"""Folder where the main process saves the first optimizer step's gradients, reduced over processes and
accumulated micro-batches and before clipping, as ``grads-step-1.safetensors`` (parameter name -> fp32
gradient); only for tests that compare a data-parallel run with an accumulated one."""


def count_label_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Units of a token-level loss: next-token positions that carry a label."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class LoopSettings:
    """What the loop needs from a command's config (see ``tether.config.TrainOptions``)."""

    out: Path
    lr: float
    batch_size: int
    seed: int = 42
    weight_decay: float = 0.0
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int | None = None
    scheduler: str = "cosine"
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    group_by_length: bool = True
    save_every: int | None = None
    keep_checkpoints: int = 2
    resume: bool = False
    log_every: int = 1
    report_to: list[str] = field(default_factory=list)
    progress: bool = True
    mixed_precision: str = "no"

    @classmethod
    def from_config(cls, config: TrainingConfig) -> LoopSettings:
        """The loop's fields from an offline training command's config (online RL builds its own)."""
        names = cls.__dataclass_fields__
        return cls(**{k: getattr(config, k) for k in names if hasattr(config, k)})


def make_accelerator(settings: LoopSettings):
    """One Accelerator per run; trackers go to ``out/`` when asked for."""
    import importlib.util

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    for tracker in settings.report_to:
        if importlib.util.find_spec(tracker) is None:
            raise TetherError(f"--report-to {tracker} needs the {tracker} package: pip install 'tether[{tracker}]'")
    if settings.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise TetherError("--mixed-precision fp16 needs a GPU; on CPU use bf16 (or 'no' for exact fp32)")
    # One process may run several commands (tests, notebooks): forget the previous run's precision,
    # keep its process group.
    AcceleratorState._reset_state()
    return Accelerator(
        log_with=list(settings.report_to) or None,
        project_dir=str(settings.out),
        cpu=not torch.cuda.is_available(),
        mixed_precision=settings.mixed_precision,
    )


class TrainLoop:
    """Runs optimizer steps over a batch plan until ``max_steps`` or the epochs are done."""

    def __init__(
        self,
        settings: LoopSettings,
        *,
        model: torch.nn.Module,
        examples: Sequence[Any],
        collate: Callable[[list[Any]], dict[str, torch.Tensor]],
        loss_fn: LossFn,
        accelerator: Any,
        lengths: Sequence[int] | None = None,
        count_units: Callable[[dict[str, torch.Tensor]], int] | None = None,
        tracker_config: dict[str, Any] | None = None,
        stateful: dict[str, Any] | None = None,
    ) -> None:
        """``stateful``: recipe objects with ``state_dict()``/``load_state_dict()`` (JSON-able) that are
        saved in every checkpoint and restored on resume."""
        self.s = settings
        self.accelerator = accelerator
        self.examples = examples
        self.collate = collate
        self.loss_fn = loss_fn
        self.count_units = count_units or count_label_tokens
        self.world = accelerator.num_processes
        self.rank = accelerator.process_index
        lengths = tuple(lengths if lengths is not None else (len(e) for e in examples))
        self.plan = BatchPlan(lengths, settings.batch_size, settings.seed, settings.group_by_length)
        per_process = len(self.plan.batches(0)) // self.world
        self.steps_per_epoch = per_process // settings.grad_accum
        if self.steps_per_epoch == 0:
            raise TetherError(
                f"{len(examples)} examples make fewer micro-batches ({per_process} per process) than one "
                f"optimizer step needs (grad_accum={settings.grad_accum}); lower --batch-size or --grad-accum"
            )
        self.total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * self.steps_per_epoch))
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise TetherError("the model has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
        from transformers import get_scheduler

        self.scheduler = get_scheduler(
            settings.scheduler,
            optimizer,
            num_warmup_steps=int(settings.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.checkpoints = settings.out / "checkpoints"
        self.metrics_path = settings.out / "metrics.jsonl"
        self.state = LoopState(world_size=self.world, grad_accum=settings.grad_accum)
        self.tracker_config = tracker_config or {}
        self.stateful = stateful or {}
        self.last_checkpoint: Path | None = None

    # -- public ---------------------------------------------------------------------------------------
    def run(self) -> LoopState:
        if self.s.resume:
            self._resume()
        elif self.accelerator.is_main_process:
            self.metrics_path.unlink(missing_ok=True)
        if self.s.report_to:
            self.accelerator.init_trackers("tether", config=_flat(self.tracker_config))
        delay = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)
        with self._progress() as bar:
            while self.state.step < self.total_steps:
                local = self._local_batches(self.state.epoch)
                g = self.s.grad_accum
                while self.state.micro_index + g <= len(local) and self.state.step < self.total_steps:
                    window = local[self.state.micro_index : self.state.micro_index + g]
                    metrics = self._optimizer_step(window)
                    self.state.micro_index += g
                    self.state.step += 1
                    bar.advance(metrics)
                    if self.state.step % self.s.log_every == 0 or self.state.step == self.total_steps:
                        self._log(metrics)
                    if self.s.save_every and self.state.step % self.s.save_every == 0:
                        self.save()
                    if delay:
                        time.sleep(delay)
                if self.state.step < self.total_steps:
                    self.state.epoch += 1
                    self.state.micro_index = 0
        if self.s.report_to:
            self.accelerator.end_training()
        return self.state

    def save(self) -> Path:
        self.state.extra = {name: obj.state_dict() for name, obj in self.stateful.items()}
        self.last_checkpoint = save_checkpoint(
            self.checkpoints,
            model=self.accelerator.unwrap_model(self.model),
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            state=self.state,
            rank=self.rank,
            is_main=self.accelerator.is_main_process,
            barrier=self.accelerator.wait_for_everyone,
            keep=self.s.keep_checkpoints,
        )
        return self.last_checkpoint

    @property
    def unwrapped_model(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    # -- internals ------------------------------------------------------------------------------------
    def _local_batches(self, epoch: int) -> list[list[int]]:
        batches = self.plan.batches(epoch)
        usable = (len(batches) // self.world) * self.world
        return batches[self.rank : usable : self.world]

    def _optimizer_step(self, window: list[list[int]]) -> dict[str, float]:
        device = self.accelerator.device
        micro = [{k: v.to(device) for k, v in self.collate([self.examples[i] for i in idx]).items()} for idx in window]
        started = time.perf_counter()
        self.model.train()
        extra: dict[str, float] = {}
        loss_total = torch.zeros((), device=device)
        # Units of the whole step (all micro-batches, all processes) normalise every micro-batch's loss.
        with torch.no_grad():
            units = torch.tensor(float(sum(self.count_units(b) for b in micro)), device=device, dtype=torch.float64)
            global_units = self.accelerator.reduce(units, reduction="sum").clamp_min(1.0)
        for j, batch in enumerate(micro):
            sync = j == len(micro) - 1
            ctx = nullcontext() if sync or self.world == 1 else self.accelerator.no_sync(self.model)
            with ctx, self.accelerator.autocast():
                loss_sum, batch_metrics = self.loss_fn(self.model, batch)
                loss = loss_sum * (self.world / global_units.to(loss_sum.dtype))
                self.accelerator.backward(loss)
            loss_total += loss_sum.detach()
            for k, v in batch_metrics.items():
                extra[k] = extra.get(k, 0.0) + v / len(micro)
        loss_value = (self.accelerator.reduce(loss_total, reduction="sum") / global_units).item()
        if self.state.step == 0 and os.environ.get(GRADS_DIR_ENV):
            self._save_grads(Path(os.environ[GRADS_DIR_ENV]))
        max_norm = self.s.max_grad_norm if self.s.max_grad_norm is not None else float("inf")
        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), max_norm)
        grad_norm = float(grad_norm)
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            kept = latest_checkpoint(self.checkpoints)
            raise TrainingDiverged(
                f"step {self.state.step + 1}: loss={loss_value} grad_norm={grad_norm} is not finite; "
                f"training stopped. Last good checkpoint: {kept or 'none written yet'}. "
                "Try a lower --lr, --max-grad-norm, or check the data for empty or extreme examples."
            )
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        tokens = sum(int(b["attention_mask"].sum()) for b in micro)
        tokens_global = int(self.accelerator.reduce(torch.tensor(tokens, device=device), reduction="sum"))
        elapsed = time.perf_counter() - started
        self.state.tokens_seen += tokens_global
        self.state.elapsed_s += elapsed
        return {
            "loss": loss_value,
            "lr": lr,
            "grad_norm": grad_norm,
            "units": float(global_units),
            "tokens": tokens_global,
            "tokens_per_s": tokens_global / elapsed if elapsed > 0 else 0.0,
            **extra,
        }

    def _save_grads(self, folder: Path) -> None:
        """The ``TETHER_DEBUG_GRADS_DIR`` hook: after DDP's all-reduce every process holds the same gradients."""
        if self.accelerator.is_main_process:
            from safetensors.torch import save_file

            named = self.accelerator.unwrap_model(self.model).named_parameters()
            grads = {n: p.grad.detach().float().cpu().contiguous() for n, p in named if p.grad is not None}
            folder.mkdir(parents=True, exist_ok=True)
            save_file(grads, str(folder / "grads-step-1.safetensors"))

    def _log(self, metrics: dict[str, float]) -> None:
        record = {"step": self.state.step, "epoch": self.state.epoch, **metrics}
        if self.accelerator.is_main_process:
            with self.metrics_path.open("a") as f:
                f.write(dumps(record) + "\n")
        if self.s.report_to:
            self.accelerator.log(metrics, step=self.state.step)

    def _resume(self) -> None:
        path, state = resume_latest(
            self.checkpoints,
            model=self.accelerator.unwrap_model(self.model),
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            rank=self.rank,
            quiet=not self.accelerator.is_main_process,
        )
        if (state.world_size, state.grad_accum) != (self.world, self.s.grad_accum):
            raise TetherError(
                f"{path} was written with {state.world_size} process(es) and grad_accum={state.grad_accum}; "
                f"resume with the same (now {self.world} and {self.s.grad_accum})"
            )
        self.state = state
        for name, obj in self.stateful.items():
            if name in state.extra:
                obj.load_state_dict(state.extra[name])
        self.last_checkpoint = path
        if self.accelerator.is_main_process and self.metrics_path.exists():
            kept = [
                line
                for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= state.step
            ]
            atomic_write_text(self.metrics_path, "".join(line + "\n" for line in kept))

    def _progress(self):
        return ProgressBar(
            total=self.total_steps,
            start=self.state.step,
            enabled=self.s.progress and self.accelerator.is_main_process,
        )


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in config.items()}


class ProgressBar:
    """A rich progress bar of optimizer or RL steps with a one-line summary; silent when disabled."""

    def __init__(
        self,
        total: int,
        start: int,
        enabled: bool,
        *,
        label: str = "train",
        info: Callable[[dict[str, float]], str] | None = None,
    ) -> None:
        self.enabled = enabled
        self.total, self.start = total, start
        self.label = label
        self.info = info or (lambda m: f"loss {m['loss']:.4f}  {m['tokens_per_s']:.0f} tok/s")
        self.progress: Progress | None = None
        self.lines: Any = None
        self.every = 1

    def __enter__(self) -> ProgressBar:
        self.done = self.start
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            console = Console()
            if not console.is_terminal:  # a log file: a plain line every tenth of the way
                self.lines = console
                self.every = max(1, (self.total - self.start) // 10)
                return self

            self.progress = Progress(
                TextColumn(f"[bold]{self.label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=self.total, completed=self.start, info="")
        return self

    def advance(self, metrics: dict[str, float]) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress.update(self.task, advance=1, info=self.info(metrics))
        elif self.lines is not None and ((self.done - self.start) % self.every == 0 or self.done == self.total):
            self.lines.print(f"{self.label}: {self.done}/{self.total}  {self.info(metrics)}", highlight=False)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
