"""Training metrics: read ``metrics.jsonl``, group its keys, and chart each group over steps.

Grouping is generic, so metrics this module has never heard of still get a chart: ``a/b`` goes under
``a``, a plain key is its own group, and any ``.../accuracy`` key goes under ``accuracy`` (a 0-1 scale
that would be flattened next to rewards). Known groups come first in a fixed order, the rest as seen.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from pathlib import Path

from tether.errors import DataError, TetherError
from tether.report.plots import line_chart

Record = dict[str, float]

BOOKKEEPING = frozenset({"step", "epoch", "units", "tokens"})
"""Counters logged with every step that are not worth a chart."""

TITLES = {
    "loss": "Loss",
    "rewards": "Rewards",
    "accuracy": "Preference accuracy",
    "logps": "Log-probabilities (policy vs reference)",
    "kl_estimate": "KL estimate",
    "grad_norm": "Gradient norm",
    "lr": "Learning rate",
}
"""Titles of the known groups, in the order their charts appear."""


def read_metrics(path: Path) -> list[Record]:
    """The finite numeric values of each logged step, in file order.

    NaN/inf and non-numeric values are dropped (the rest of their line is kept). A last line that is not
    valid JSON is taken for a write cut short and skipped; a bad line elsewhere is an error.
    """
    if not path.is_file():
        raise TetherError(f"{path} not found: no training metrics to report (is this a training --out folder?)")
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):
                continue
            raise DataError(f"not valid JSON ({e.msg})", file=path, line=number) from None
        if not isinstance(obj, dict) or not (_is_number(obj.get("step")) and math.isfinite(obj["step"])):
            raise DataError("expected a JSON object with a finite numeric 'step'", file=path, line=number)
        records.append({k: float(v) for k, v in obj.items() if _is_number(v) and math.isfinite(v)})
    if not records:
        raise TetherError(f"{path} is empty: no training metrics were logged")
    return records


def group_of(key: str) -> str:
    if key.rsplit("/", 1)[-1] == "accuracy":
        return "accuracy"
    return key.split("/", 1)[0]


def metric_groups(records: list[Record], keys: Collection[str] | None = None) -> dict[str, list[str]]:
    """Group -> its keys (first-seen order), known groups first; only ``keys`` when given."""
    seen = dict.fromkeys(k for r in records for k in r if k not in BOOKKEEPING and (keys is None or k in keys))
    groups: dict[str, list[str]] = {name: [] for name in TITLES}
    for key in seen:
        groups.setdefault(group_of(key), []).append(key)
    return {name: members for name, members in groups.items() if members}


def series(records: list[Record], key: str) -> list[tuple[float, float]]:
    """(step, value) for every step that logged ``key``."""
    return [(r["step"], r[key]) for r in records if key in r]


def last_value(records: list[Record], key: str) -> float | None:
    return next((r[key] for r in reversed(records) if key in r), None)


def metric_charts(records: list[Record], keys: Collection[str] | None = None) -> list[str]:
    """One SVG line chart per group of keys (all keys, or only ``keys``)."""
    charts = []
    for group, members in metric_groups(records, keys).items():
        lines = {_legend(group, key): series(records, key) for key in members}
        charts.append(line_chart(lines, TITLES.get(group, group), "step", group))
    return charts


def _legend(group: str, key: str) -> str:
    return key.removeprefix(f"{group}/")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
