"""The run loop `tether cai revise` and `tether cai label` share: open the folder, the append-only store and
the resolved config, then work the prompts not yet done batch by batch (each finished batch saved, so a
stopped run resumes after it), with progress."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from tether.atomic import atomic_write_text
from tether.cai.prompts import CaiPrompt
from tether.config import Options, dump_config
from tether.report.progress import steps
from tether.runs.folders import open_run_folder
from tether.runs.store import SampleStore


def open_store(
    config: Options, kind: str, identity: dict[str, Any], *, out: Path, name: str, resume: bool, overwrite: bool
) -> SampleStore:
    """Mark ``out`` as a ``kind`` run, open its store ``name`` (refusing a resume with another ``identity``) and
    save the resolved config beside it."""
    open_run_folder(out, kind, resume=resume, overwrite=overwrite)
    store = SampleStore(out, identity, resume=resume, overwrite=overwrite, name=name)
    atomic_write_text(Path(out) / "config.yaml", dump_config(config))
    return store


def work_in_batches(
    store: SampleStore,
    prompts: Sequence[CaiPrompt],
    work: Callable[[list[CaiPrompt]], list[dict[str, Any]]],
    *,
    batch_size: int,
    console: Console,
    label: str,
    progress: bool,
) -> list[dict[str, Any]]:
    """Run ``work`` on the prompts ``store`` has not done, ``batch_size`` at a time, appending each batch's
    records; return every prompt's record in prompt order."""
    todo = [p for p in prompts if not store.done(p.id)]
    with steps(console, label, len(todo), enabled=progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = list(todo[start : start + batch_size])
            store.append(work(batch))
            bar.advance(len(batch))
    return [store.records[p.id] for p in prompts]
