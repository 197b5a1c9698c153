"""An eval run's folder: ``run.json`` (what was run) and ``samples.jsonl`` (one line per judged sample).

Lines are appended and flushed batch by batch, so a stopped run loses at most the batch in flight and
``--resume`` continues where it stopped. A final line cut short by a crash is dropped on resume (with a
note), never silently parsed. Resuming with another suite, source, target or judge is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tether.atomic import atomic_write_json
from tether.errors import TetherError, UsageError


class SampleStore:
    def __init__(self, out: Path, identity: dict[str, Any], *, resume: bool, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.path = self.out / "samples.jsonl"
        self.run_file = self.out / "run.json"
        self.records: dict[str, dict[str, Any]] = {}
        self.dropped_partial_line = False
        if self.path.exists() and not (resume or overwrite):
            raise UsageError(f"{self.out} already holds a run; pass --resume to continue it or --overwrite")
        self.out.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            saved = json.loads(self.run_file.read_text()) if self.run_file.exists() else {}
            changed = {k: (saved.get(k), v) for k, v in identity.items() if saved.get(k) != v}
            if changed:
                detail = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
                raise UsageError(f"cannot resume {self.out}: the run was made with other settings ({detail})")
            self._load()
        else:
            self.path.unlink(missing_ok=True)
        atomic_write_json(self.run_file, identity)

    def _load(self) -> None:
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            raw = raw[: raw.rfind(b"\n") + 1]
            self.dropped_partial_line = True
            with self.path.open("r+b") as handle:
                handle.truncate(len(raw))
        for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise TetherError(
                        f"{self.path}:{number}: not valid JSON ({err.msg}); the run folder is damaged"
                    ) from None
                self.records[record["id"]] = record

    def done(self, sample_id: str) -> bool:
        return sample_id in self.records

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        for record in records:
            self.records[record["id"]] = record
