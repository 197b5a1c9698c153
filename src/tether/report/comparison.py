"""A before/after evaluation report: rates per phase, a bar chart, optional training curves, examples."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from tether.report.html import bullets, page, paragraph, section, table, write_html
from tether.report.metrics import metric_charts, read_metrics
from tether.report.plots import grouped_bars

TRAINING_KEYS = ("loss", "rewards/margin", "rewards/accuracy")
"""The training curves a comparison shows (those the run logged)."""


def write_comparison_report(
    path: Path,
    *,
    title: str,
    rates: dict[str, dict[str, float]],
    row_labels: dict[str, str],
    examples: list[dict[str, str]],
    notes: list[str],
    training_metrics: Path | None = None,
) -> Path:
    """Write an HTML report comparing rates (fractions in [0, 1]) across phases, e.g. ``before``/``after``.

    Rows follow ``row_labels`` (then any other metric in ``rates``); the change column is the last phase
    minus the first, in percentage points. Example columns are the keys of ``examples`` in first-seen order.
    """
    if not rates:
        raise ValueError("rates is empty: nothing to compare")
    phases = list(rates)
    keys = list(dict.fromkeys([*row_labels, *(k for r in rates.values() for k in r)]))
    values = {p: [rates[p].get(k, math.nan) for k in keys] for p in phases}
    labels = [row_labels.get(k, k) for k in keys]

    headers = ["Metric", *phases, "Change (points)"] if len(phases) > 1 else ["Metric", *phases]
    rows = []
    for i, label in enumerate(labels):
        row = [label, *(_percent(values[p][i]) for p in phases)]
        if len(phases) > 1:
            row.append(_points(values[phases[-1]][i] - values[phases[0]][i]))
        rows.append(row)
    chart = grouped_bars([textwrap.fill(x, 18) for x in labels], values, title, "% of prompts", percent=True)
    sections = [section("Results", table(headers, rows), chart)]
    if notes:
        sections.append(section("Notes", bullets(notes)))
    if training_metrics is not None:
        charts = metric_charts(read_metrics(training_metrics), TRAINING_KEYS)
        sections.append(
            section("Training", *(charts or [paragraph(f"No loss or reward curves in {training_metrics}.")]))
        )
    if examples:
        columns = list(dict.fromkeys(k for ex in examples for k in ex))
        sections.append(section("Examples", table(columns, [[ex.get(c) for c in columns] for ex in examples])))
    return write_html(Path(path), page(title, sections))


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def _points(delta: float) -> str:
    return "n/a" if math.isnan(delta) else f"{delta * 100:+.1f}"
