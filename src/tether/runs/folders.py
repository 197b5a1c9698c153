"""Run folders that cannot be mixed up: every command marks its ``--out`` with its kind.

``OUT/tether-run.json`` holds ``{"kind": "dpo", "tether_version": "0.1.0", "created": "<UTC time>"}``.
Before any work a command checks its folder (:func:`check_run_folder`, which writes nothing) and refuses,
with a one-line usage error (exit code 2):

- a file where the folder should be;
- another kind's run (``tether eval --out <a dpo run>``), whatever the flags;
- a non-empty folder that holds no tether run (hidden files aside), whatever the flags: tether never
  deletes or mixes its outputs with files it did not write;
- a run of its own kind without ``--resume`` or ``--overwrite``.

Once the inputs are validated and the models loaded, :func:`open_run_folder` creates the folder and writes
the marker. ``--overwrite`` first deletes every file that kind of run writes (:data:`OWNED`) and nothing
else, so a crash of the new run leaves only the new, partial run (which ``--resume`` continues), never an
old ``summary.json`` or ``report.html`` beside it.

Folders written before the marker existed are recognised by what they hold: ``config.yaml``'s
``command:`` (training runs and the demo), ``run.json`` (``"command": "redteam"``, else a ``suite``: an
eval run) or ``eval.json`` (``rm eval``); they resume and are overwritten like marked ones, and get a
marker when next opened.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tether.atomic import TMP_SUFFIX, atomic_write_json
from tether.errors import UsageError

MARKER = "tether-run.json"

_TRAINING = ("config.yaml", "metrics.jsonl", "checkpoints", "model", "report.html", "tether")
_RL = (*_TRAINING, "rollouts.jsonl", "value_model")
_SAMPLES = ("run.json", "samples.jsonl", "summary.json", "report.html")

OWNED: dict[str, tuple[str, ...]] = {
    **{kind: _TRAINING for kind in ("sft", "dpo", "orpo", "simpo", "kto", "rm train", "unlearn")},
    **{kind: _RL for kind in ("ppo", "rloo", "grpo")},
    "eval": _SAMPLES,
    "redteam": _SAMPLES,
    "rm eval": ("eval.json", "report.html"),
    "unlearn-eval": ("config.yaml", "eval.json", "report.html", "relearn"),
    "demo": ("config.yaml", "inputs", "loop", "demo_results.json", "report.html", "pairs.jsonl", "dpo"),
    "cai revise": ("config.yaml", "run.json", "chains.jsonl", "sft.jsonl", "preferences.jsonl", "summary.json"),
    "cai label": ("config.yaml", "run.json", "labels.jsonl", "preferences.jsonl", "agreement.jsonl", "summary.json"),
    "loop": ("config.yaml", "loop.json", "report.html"),  # and its iter-NNN folders (`tether loop` names them)
    "interp capture": ("config.yaml", "activations", "summary.json"),
    "interp lens": ("config.yaml", "lens.json", "report.html"),
    "interp patch": ("config.yaml", "patching.json", "report.html"),
    "sae train": ("config.yaml", "metrics.jsonl", "checkpoints", "sae", "summary.json"),
    "interp probe": ("config.yaml", "features.safetensors", "probes.json", "probe.safetensors", "report.html"),
    "interp refusal-direction": (
        "config.yaml",
        "mean_diffs.safetensors",
        "candidates.json",
        "direction.safetensors",
        "completions.jsonl",
        "results.json",
        "model",
        "report.html",
    ),
    "interp steer": ("config.yaml", "completions.jsonl", "sweep.json", "report.html"),
}
"""What each kind of run writes in its folder (``tether`` is the TensorBoard log folder of ``--report-to``);
``--overwrite`` deletes exactly these, plus the marker and tether's own temporary files."""

FINISHED = {
    **{kind: "model" for kind in OWNED},
    **{"eval": "summary.json", "redteam": "summary.json", "rm eval": "eval.json", "demo": "demo_results.json"},
    "cai revise": "summary.json",
    "cai label": "summary.json",
    "loop": "report.html",
    "interp capture": "summary.json",
    "interp lens": "report.html",
    "interp patch": "report.html",
    "sae train": "summary.json",
    **{kind: "report.html" for kind in ("interp probe", "interp refusal-direction", "interp steer")},
}
"""The file or folder a kind of run writes last: present, the run finished."""

RESUMABLE = frozenset(kind for kind in OWNED if kind not in ("rm eval", "demo", "interp lens", "interp patch"))


def read_marker(out: Path) -> dict[str, Any] | None:
    """The marker's contents, or None when ``out`` has none (or it is unreadable)."""
    try:
        value = json.loads((Path(out) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("kind"), str) else None


def _legacy_kind(out: Path) -> str | None:
    """The kind of a run written before the marker existed, from the files it holds."""
    config = out / "config.yaml"
    if config.is_file():
        import yaml

        try:
            command = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("command")
        except (yaml.YAMLError, AttributeError, UnicodeDecodeError):
            command = None
        if command in OWNED:
            return command
    run = out / "run.json"
    if run.is_file():
        try:
            identity = json.loads(run.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            identity = None
        if isinstance(identity, dict):
            if identity.get("command") == "redteam":
                return "redteam"
            if "suite" in identity:
                return "eval"
    if (out / "eval.json").is_file():
        return "rm eval"
    return None


def run_kind(out: str | Path) -> str | None:
    """The kind of tether run in ``out`` (the marker's, else inferred for an older run), or None."""
    out = Path(out)
    if not out.is_dir():
        return None
    marker = read_marker(out)
    return marker["kind"] if marker is not None else _legacy_kind(out)


def _visible(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


def _holds_results(out: Path, kind: str) -> bool:
    return any((out / name).exists() for name in OWNED[kind] if name != "config.yaml")


def check_run_folder(
    out: str | Path, kind: str, *, resume: bool = False, overwrite: bool = False, replace_own: bool = False
) -> None:
    """Raise :class:`UsageError` unless a ``kind`` run may write into ``out`` (see the module docstring).

    ``replace_own``: a run of the same kind is replaced without a flag (the demo). Writes nothing.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder (a new one, or a `tether {kind}` run)")
    if not out.exists():
        return
    found = run_kind(out)
    if found is None:
        visible = _visible(out)
        if visible:
            shown = ", ".join(visible[:3]) + (", ..." if len(visible) > 3 else "")
            raise UsageError(f"--out {out} is not empty and holds no tether run ({shown}); pass a new or empty folder")
        return
    if found != kind:
        raise UsageError(f"--out {out} holds a `tether {found}` run, not a `tether {kind}` one; pass another folder")
    if resume or overwrite or replace_own or not _holds_results(out, kind):
        return
    what = "a finished" if (out / FINISHED[kind]).exists() else "an unfinished"
    fix = "pass --resume to continue it or --overwrite" if kind in RESUMABLE else "pass --overwrite"
    raise UsageError(f"--out {out} already holds {what} run of `tether {kind}`; {fix} to replace it")


def clear_run_folder(out: str | Path, kind: str, *, extra: tuple[str | Path, ...] = ()) -> list[str]:
    """Delete what a ``kind`` run writes in ``out`` (and ``extra`` paths inside it, and tether's temporary
    files); other files stay. Returns the names deleted."""
    out = Path(out)
    removed = []
    names = set(OWNED[kind]) | {MARKER}
    for path in extra:
        path = Path(path)
        if path.resolve().parent == out.resolve():
            names.add(path.name)
    for entry in sorted(out.iterdir()) if out.is_dir() else []:
        temporary = entry.name.startswith(".") and (entry.name.endswith(TMP_SUFFIX) or entry.name.startswith(".tmp-"))
        if entry.name in names or temporary:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry.name)
    return removed


def open_run_folder(
    out: str | Path,
    kind: str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    replace_own: bool = False,
    extra: tuple[str | Path, ...] = (),
) -> Path:
    """Check ``out`` again, then create it and mark it as a ``kind`` run. With ``overwrite`` or
    ``replace_own`` (and not ``resume``) an earlier run's files are deleted first (:func:`clear_run_folder`).
    Call it once the inputs are validated, before the first output is written."""
    out = Path(out)
    check_run_folder(out, kind, resume=resume, overwrite=overwrite, replace_own=replace_own)
    if (overwrite or replace_own) and not resume:
        clear_run_folder(out, kind, extra=extra)
    out.mkdir(parents=True, exist_ok=True)
    marker = read_marker(out)
    if marker is None or marker["kind"] != kind:
        from tether import __version__

        created = datetime.now(UTC).isoformat(timespec="seconds")
        atomic_write_json(out / MARKER, {"kind": kind, "tether_version": __version__, "created": created})
    return out


def check_output_file(path: str | Path, flag: str = "--output") -> Path:
    """A file output (``--output``, ``--export-pairs``): refuse a folder or a path under a file. Writes nothing."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; name the file to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {path}: {parent} is a file, not a folder")
            break
    return path
