"""Atomic writes: a reader sees the old file (or folder) or the new one, never half of either.

Every file tether writes whole (configs, summaries, reports, JSONL outputs, cached tensors, checkpoints,
final models) goes through here: it is written to a hidden temporary name beside its target
(``.NAME.<random>.tmp``, created exclusively so a stranger's file is never reused), flushed to disk, then
renamed over the target with ``os.replace``. On any error the temporary file is removed and the target
is left as it was. Append-only logs (``samples.jsonl``, ``metrics.jsonl``) are not written here.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tether.jsonsafe import dumps

TMP_SUFFIX = ".tmp"


def temp_name(path: Path) -> Path:
    """A fresh hidden name beside ``path`` (``.NAME.<8 hex>.tmp``)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path for a writer that wants a file name (``safetensors.save_file``); on success
    it replaces ``path``. The parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file for writing (``"w"`` or ``"wb"``); on success it is synced and replaces ``path``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        binary = mode == "wb"
        # "x": never reuse a file someone else made; the mode follows the umask.
        with tmp.open("xb" if binary else "x", encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path) as handle:
        handle.write(text)
    return Path(path)


def atomic_write_json(path: str | Path, value: Any, *, indent: int | None = 2) -> Path:
    """``value`` as strict JSON (:func:`tether.jsonsafe.dumps`: NaN/inf as null) plus a final newline."""
    return atomic_write_text(path, dumps(value, indent=indent) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """One strict JSON value per line."""
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(dumps(row) + "\n")
    return Path(path)


def replace_folder(src: str | Path, dst: str | Path) -> Path:
    """Move the finished folder ``src`` to ``dst``, replacing any folder there.

    POSIX cannot rename over a non-empty folder, so an old ``dst`` is first renamed aside, then ``src``
    renamed into place, then the old copy deleted: ``dst`` is either the old folder or the new one (a
    crash between the two renames leaves the old one beside it under a hidden ``.tmp`` name).
    """
    src, dst = Path(src), Path(dst)
    try:
        os.rename(src, dst)
    except OSError:
        if not dst.exists():
            raise
        aside = temp_name(dst)
        os.rename(dst, aside)
        os.rename(src, dst)
        shutil.rmtree(aside, ignore_errors=True)
    return dst


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path``
    (:func:`replace_folder`), on error it is deleted and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
