"""An eval run's folder: ``run.json`` (what was run) and ``samples.jsonl`` (one line per judged sample; another
``name`` for other append-only logs, e.g. ``tether cai revise``'s ``chains.jsonl``).

Lines are appended and flushed batch by batch, so a stopped run loses at most the batch in flight and
``--resume`` continues where it stopped. A final line cut short by a crash is dropped on resume (with a
note), never silently parsed. Resuming with another suite, source, target or judge is refused.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tether.atomic import atomic_write_json
from tether.errors import TetherError, UnscoredError, UsageError
from tether.jsonsafe import dumps


class SampleStore:
    def __init__(
        self, out: Path, identity: dict[str, Any], *, resume: bool, overwrite: bool = False, name: str = "samples.jsonl"
    ) -> None:
        self.out = Path(out)
        self.path = self.out / name
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
        """Stored without a target error: a row whose request failed is asked again on ``--resume``."""
        record = self.records.get(sample_id)
        return record is not None and not record.get("error")

    @property
    def failed(self) -> int:
        """Stored rows whose request failed (they are asked again)."""
        return sum(1 for record in self.records.values() if record.get("error"))

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        for record in records:
            self.records[record["id"]] = record


def check_unscored(
    records: Sequence[dict[str, Any]], limit: float, *, what: str = "answers", deciding_only: bool = False
) -> None:
    """Raise :class:`UnscoredError` when at least ``limit`` of ``records`` (each with a ``verdict``, and
    a ``harm_verdict`` where a harm judge ran) are unscored by either judge, naming the most common
    reason; ``limit`` 1.0 fails only a run where nothing was scored. ``deciding_only``: only the verdict
    that decided the record counts (a red-team attempt's harm verdict where there is one)."""

    def why(record: dict[str, Any]) -> str | None:  # the refusal verdict's reason, or the harm verdict's
        keys: tuple[str, ...] = ("verdict", "harm_verdict")
        if deciding_only:
            keys = ("harm_verdict",) if "harm_verdict" in record else ("verdict",)
        for key in keys:
            if key in record and record[key]["label"] == "unscored":
                return record[key]["reason"]
        return None

    reasons = [reason for reason in map(why, records) if reason is not None]
    if not records or len(reasons) < limit * len(records):
        return
    reason, count = Counter(reasons).most_common(1)[0]
    raise UnscoredError(
        f"{len(reasons)} of {len(records)} {what} ({len(reasons) / len(records):.0%}) are unscored, at or above "
        f"--max-unscored {limit:g}; most common reason ({count}x): {reason[:300]}. The summary and report are "
        "written; --resume asks the failed requests again"
    )
