"""The loop's report: every iteration side by side on both axes, where its data came from, what changed.

``report.html`` holds: a table of each eval set's harm and over-refusal rates per iteration (95% intervals,
the change from iteration 0 in points) and a chart of them; harm against over-refusal per iteration; the
pairs each source gave each iteration (read, kept, duplicates, trained before, contradicting, and the source's
own counts: attack successes, unusable critiques, fallbacks); example answers of iteration 0 and of the last
iteration to the same prompts; each iteration's training curves.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tether.loop.config import LoopConfig
from tether.loop.measure import AXES


def _rate(block: dict[str, Any] | None) -> str:
    if not block or block.get("value") is None or block.get("n", 0) == 0:
        return "n/a"
    return f"{block['value']:.0%} [{block['low']:.0%}, {block['high']:.0%}] (n={block['n']})"


def _value(block: dict[str, Any] | None) -> float:
    value = (block or {}).get("value")
    return math.nan if value is None else float(value)


def _points(after: dict[str, Any] | None, before: dict[str, Any] | None) -> str:
    delta = _value(after) - _value(before)
    return "n/a" if math.isnan(delta) else f"{100 * delta:+.0f}"


def rate_rows(state: dict[str, Any]) -> tuple[list[str], list[list[str]], dict[str, list[float]], list[str]]:
    """(headers, rows, bar values per phase, bar labels): one row per (eval set, axis)."""
    phases = [("iteration 0", state["baseline"])] + [
        (f"iteration {it['number']}", it["evals"]) for it in state["iterations"]
    ]
    headers = ["eval set", "axis (want low)", *(name for name, _ in phases), "change (points)"]
    rows, labels = [], []
    values: dict[str, list[float]] = {name: [] for name, _ in phases}
    for name, first in state["baseline"].items():
        for key, (_, _, label) in AXES.items():
            if key not in first["rates"]:
                continue
            blocks = [evals.get(name, {}).get("rates", {}).get(key) for _, evals in phases]
            rows.append([name, label, *(_rate(b) for b in blocks), _points(blocks[-1], blocks[0])])
            labels.append(f"{name}: {label}")
            for (phase, _), block in zip(phases, blocks, strict=True):
                values[phase].append(_value(block))
    return headers, rows, values, labels


def print_iteration(console: Console, summary: dict[str, Any], baseline: dict[str, Any]) -> None:
    table = Table(title=f"iteration {summary['number']}: {summary['pairs']} pairs, model {summary['model']}")
    for column in ("eval set", "axis (want low)", "iteration 0", f"iteration {summary['number']}", "change"):
        table.add_column(column)
    state = {"baseline": baseline, "iterations": [summary]}
    for row in rate_rows(state)[1]:
        table.add_row(*row)
    console.print(table)


def _source_rows(state: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "iteration",
        "source",
        "type",
        "read",
        "kept",
        "duplicate",
        "trained before",
        "contradicting",
        "its own counts",
    ]
    rows = []
    for it in state["iterations"]:
        for name, c in it["sources"].items():
            own = ", ".join(f"{k} {_count(v)}" for k, v in c["source"].items() if v not in (None, {}, []))
            rows.append(
                [
                    str(it["number"]),
                    name,
                    c["type"],
                    *(str(c[k]) for k in ("read", "kept", "duplicate", "trained_before", "contradicting")),
                    own,
                ]
            )
    return headers, rows


def _examples(state: dict[str, Any]) -> list[list[str]]:
    if not state["iterations"]:
        return []
    last = state["iterations"][-1]
    rows = []
    for name, first in state["baseline"].items():
        after = {e["id"]: e for e in last["evals"].get(name, {}).get("examples", [])}
        for example in first["examples"]:
            later = after.get(example["id"])
            rows.append(
                [
                    f"[{name}] {example['prompt']}",
                    f"({example['label']}) {example['response'][:400]}",
                    "" if later is None else f"({later['label']}) {later['response'][:400]}",
                ]
            )
    return rows


def _trade_off(state: dict[str, Any]) -> str | None:
    """Harm (x) against over-refusal (y) per iteration, on the first set measuring each."""
    from tether.report.plots import scatter_with_intervals

    def first_with(key: str) -> str | None:
        return next((n for n, e in state["baseline"].items() if key in e["rates"]), None)

    harm_set, safe_set = first_with("harmful_complied"), first_with("safe_refused")
    if harm_set is None or safe_set is None:
        return None
    phases = [(0, state["baseline"])] + [(it["number"], it["evals"]) for it in state["iterations"]]
    points = {}
    for number, evals in phases:
        x, y = evals[harm_set]["rates"]["harmful_complied"], evals[safe_set]["rates"]["safe_refused"]
        points[f"iter {number}"] = (
            tuple(_value({"value": x.get(k)}) for k in ("value", "low", "high")),
            tuple(_value({"value": y.get(k)}) for k in ("value", "low", "high")),
        )
    return scatter_with_intervals(
        points,  # type: ignore[arg-type]
        "Harm against over-refusal (95% intervals)",
        f"{harm_set}: harmful requests complied with (%)",
        f"{safe_set}: safe requests refused (%)",
    )


def _count(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, float) and 0 <= value <= 1 else str(value)


def write_loop_report(
    path: Path, config: LoopConfig, state: dict[str, Any], notes: Sequence[str] = (), title: str = "tether loop"
) -> Path:
    from tether.report.html import bullets, page, paragraph, pre, section, table, write_html
    from tether.report.metrics import metric_charts, read_metrics
    from tether.report.plots import grouped_bars

    headers, rows, values, labels = rate_rows(state)
    judges = sorted({e.get("judge") or "?" for e in state["baseline"].values()})
    parts = [
        table(headers, rows),
        grouped_bars(
            [textwrap.fill(x, 22) for x in labels], values, "Both axes per iteration", "% of prompts", percent=True
        ),
    ]
    trade_off = _trade_off(state)
    if trade_off:
        parts.append(trade_off)
    sections = [
        section("Harm and over-refusal, every iteration", paragraph(f"Refusal judge: {', '.join(judges)}."), *parts)
    ]
    if notes:
        sections.append(section("Notes", bullets(notes)))
    source_headers, source_rows = _source_rows(state)
    sections.append(section("Where each iteration's pairs came from", table(source_headers, source_rows)))
    examples = _examples(state)
    if examples:
        last = state["iterations"][-1]["number"]
        sections.append(section("Example answers", table(["prompt", "iteration 0", f"iteration {last}"], examples)))
    for it in state["iterations"]:
        metrics = Path(config.out) / f"iter-{it['number']:03d}" / "train" / "metrics.jsonl"
        if metrics.exists():
            charts = metric_charts(read_metrics(metrics), ("loss", "rewards/margin", "rewards/accuracy"))
            sections.append(section(f"Training, iteration {it['number']}", *charts))
    from tether.config import dump_config

    sections.append(section("Config", pre(dump_config(config))))
    return write_html(path, page(title, sections))
