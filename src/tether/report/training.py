"""The report of one training run: ``OUT/report.html`` from ``OUT/metrics.jsonl`` and ``OUT/config.yaml``."""

from __future__ import annotations

from pathlib import Path

from tether.report.html import page, pre, section, table, write_html
from tether.report.metrics import Record, last_value, metric_charts, metric_groups, read_metrics, series


def write_training_report(out: Path, *, title: str | None = None) -> Path:
    """Write ``out/report.html``: a summary, one chart per metric group, and the resolved config if saved."""
    out = Path(out)
    records = read_metrics(out / "metrics.jsonl")
    sections = [
        section("Summary", table(["Measure", "Value"], summary_rows(records))),
        section("Training curves", *metric_charts(records)),
    ]
    config = out / "config.yaml"
    if config.is_file():
        sections.append(section("Config", pre(config.read_text(encoding="utf-8"))))
    return write_html(out / "report.html", page(title or f"Training report: {out.resolve().name}", sections))


def summary_rows(records: list[Record]) -> list[tuple[str, str]]:
    """Steps, first and last loss, final accuracy and mean throughput, for what was logged."""
    rows = [("Steps logged", str(len(records))), ("Last step", f"{records[-1]['step']:g}")]
    losses = series(records, "loss")
    if losses:
        rows += [("First loss", f"{losses[0][1]:.4g}"), ("Last loss", f"{losses[-1][1]:.4g}")]
    accuracy_keys = metric_groups(records).get("accuracy", [])
    if accuracy_keys:
        rows.append((f"Final {accuracy_keys[0]}", f"{last_value(records, accuracy_keys[0]):.1%}"))
    speeds = [v for _, v in series(records, "tokens_per_s")]
    if speeds:
        rows.append(("Mean tokens/s", f"{sum(speeds) / len(speeds):,.0f}"))
    return rows
