"""Output folders of training runs: checks before any work, the resolved config, the final model.

Layout of ``OUT``::

    config.yaml        the resolved config (re-runnable with --config)
    metrics.jsonl      one JSON object per logged optimizer step
    checkpoints/       step-NNNNNNNN folders (atomic, pickle-free)
    model/             the final model: a peft adapter (LoRA) or a full checkpoint, plus the tokenizer
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tether.config import Options, dump_config
from tether.errors import TetherError
from tether.train.checkpoint import checkpoint_dirs

MODEL_DIR = "model"


def check_output(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber an earlier run unless asked. Writes nothing; call it before any work."""
    if out.exists() and not out.is_dir():
        raise TetherError(f"--out {out} is a file, not a folder")
    finished = (out / MODEL_DIR).exists()
    unfinished = bool(checkpoint_dirs(out / "checkpoints"))
    if resume:
        if not unfinished:
            raise TetherError(f"--resume: {out} has no checkpoint to resume from")
        return
    if (finished or unfinished) and not overwrite:
        what = "a finished run" if finished else "checkpoints of an unfinished run"
        raise TetherError(f"{out} already holds {what}; pass --resume to continue or --overwrite to replace")


def create_output(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Create ``out`` (clearing an earlier run's results with ``overwrite``) once inputs are validated."""
    check_output(out, resume=resume, overwrite=overwrite)
    if overwrite and not resume:
        for name in (MODEL_DIR, "checkpoints", "metrics.jsonl"):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def write_config(out: Path, config: Options) -> Path:
    path = out / "config.yaml"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(dump_config(config))
    tmp.replace(path)
    return path


def save_final_model(out: Path, model: Any, tokenizer: Any) -> Path:
    """Write ``out/model`` atomically: into a hidden folder first, then renamed into place."""
    target = out / MODEL_DIR
    tmp = out / f".tmp-{MODEL_DIR}"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target
