"""Output folders of training runs: checks before any work, the resolved config, the final model.

Layout of ``OUT``::

    tether-run.json    the run's kind (``tether.runs.folders``): no other command writes into this folder
    config.yaml        the resolved config (re-runnable with --config)
    metrics.jsonl      one JSON object per logged optimizer step
    checkpoints/       step-NNNNNNNN folders (atomic, pickle-free)
    model/             the final model: a peft adapter (LoRA) or a full checkpoint, plus the tokenizer
    report.html        plots of every logged metric
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether.atomic import atomic_folder, atomic_write_text
from tether.config import Options, dump_config
from tether.errors import UsageError
from tether.runs.folders import check_run_folder, open_run_folder
from tether.train.checkpoint import checkpoint_dirs

MODEL_DIR = "model"


def check_output(out: Path, *, resume: bool, overwrite: bool, kind: str) -> None:
    """Refuse another kind's run, unrelated files, or an earlier run without --resume/--overwrite
    (:func:`tether.runs.folders.check_run_folder`); --resume needs a checkpoint. Writes nothing; call it
    before any work."""
    check_run_folder(out, kind, resume=resume, overwrite=overwrite)
    if resume and not checkpoint_dirs(Path(out) / "checkpoints"):
        raise UsageError(f"--resume: {out} has no checkpoint to resume from; start without --resume")


def create_output(out: Path, *, resume: bool, overwrite: bool, kind: str) -> None:
    """Create and mark ``out`` once inputs are validated; with ``overwrite`` every file of the earlier run
    is deleted first, so a crash of the new run never leaves the old results beside it."""
    check_output(out, resume=resume, overwrite=overwrite, kind=kind)
    open_run_folder(out, kind, resume=resume, overwrite=overwrite)


def write_config(out: Path, config: Options) -> Path:
    return atomic_write_text(Path(out) / "config.yaml", dump_config(config))


def save_final_model(out: Path, model: Any, tokenizer: Any | None = None, *, name: str = MODEL_DIR) -> Path:
    """Write ``out/<name>`` (safetensors, plus the tokenizer) atomically: into a hidden folder first, then
    renamed into place (:func:`tether.atomic.atomic_folder`)."""
    with atomic_folder(Path(out) / name) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(out) / name
