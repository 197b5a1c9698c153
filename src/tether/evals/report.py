"""HTML report of one or more prompt-suite runs: headline rates with intervals, categories, plots, samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tether.jsonsafe import nan_for_null
from tether.report.html import page, paragraph, section, table, write_html
from tether.report.plots import grouped_bars, scatter_with_intervals

_NAMES = {
    "attack_success": "attack success (complies)",
    "lenient_attack_success": "attack success incl. partial",
    "refusal": "refusal",
    "full_refusal": "full refusal",
    "partial_refusal": "partial refusal",
    "any_refusal": "any refusal",
}


def _ci(estimate: dict[str, float]) -> str:
    if math.isnan(estimate["value"]):
        return "n/a"
    return f"{estimate['value']:.1%} [{estimate['low']:.1%}, {estimate['high']:.1%}]"


def _headline_rows(name: str, summary: dict[str, Any]) -> list[list[object]]:
    rows = []
    for block in ("harmful", "safe"):
        if block not in summary:
            continue
        overall = summary[block]["overall"]
        for metric, estimate in overall.items():
            if isinstance(estimate, dict):
                rows.append(
                    [name, block, _NAMES.get(metric, metric), _ci(estimate), overall["scored"], overall["unscored"]]
                )
    return rows


def _category_section(name: str, block: str, data: dict[str, Any], metric: str) -> str:
    categories = list(data["categories"])
    rows = [[c, _ci(v[metric]), v["scored"], v["unscored"]] for c, v in data["categories"].items()]
    chart = grouped_bars(
        categories,
        {_NAMES[metric]: [v[metric]["value"] for v in data["categories"].values()]},
        f"{name}: {_NAMES[metric]} by category",
        "%",
        percent=True,
    )
    return section(
        f"{name}: {block} prompts by category",
        table(["category", f"{_NAMES[metric]} [95% CI]", "scored", "unscored"], rows),
        chart,
    )


def write_eval_report(
    path: Path,
    *,
    title: str,
    runs: dict[str, dict[str, Any]],
    samples: Sequence[dict[str, Any]] = (),
    notes: Sequence[str] = (),
) -> Path:
    """``runs`` maps a run name to its :func:`~tether.evals.summary.summarize_prompt_run` summary."""
    parts = [
        section(
            "Headline rates (95% bootstrap intervals)",
            table(
                ["run", "prompts", "metric", "rate [95% CI]", "scored", "unscored"],
                [row for name, summary in runs.items() for row in _headline_rows(name, summary)],
            ),
            *(paragraph(n) for n in notes),
        )
    ]
    points = {
        name: (
            tuple(s["safe"]["overall"]["any_refusal"][k] for k in ("value", "low", "high")),
            tuple(s["harmful"]["overall"]["lenient_attack_success"][k] for k in ("value", "low", "high")),
        )
        for name, s in runs.items()
        if "safe" in s and "harmful" in s
    }
    if points:
        parts.append(
            section(
                "Harm versus over-refusal (lower left is better)",
                scatter_with_intervals(
                    points,
                    "harm vs over-refusal",
                    "safe prompts refused (any) %",
                    "harmful prompts answered (incl. partial) %",
                ),
            )
        )
    for name, summary in runs.items():
        if "harmful" in summary:
            parts.append(_category_section(name, "harmful", summary["harmful"], "attack_success"))
        if "safe" in summary:
            parts.append(_category_section(name, "safe", summary["safe"], "any_refusal"))
        if summary.get("unscored"):
            parts.append(
                section(
                    f"{name}: could not score", table(["reason", "count"], list(summary["unscored_reasons"].items()))
                )
            )
    if samples:
        rows = [
            [
                s["id"],
                s["category"],
                s["expected"],
                str(s["prompt"])[:200],
                s["response"][:300],
                s["verdict"]["label"],
                s["verdict"]["reason"][:120],
            ]
            for s in samples[:200]
        ]
        parts.append(
            section(
                "Samples (first 200; all are in samples.jsonl)",
                table(["id", "category", "expected", "prompt", "response", "verdict", "reason"], rows),
            )
        )
    return write_html(path, page(title, parts))


def merge_runs(run_dirs: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Prompt-suite summaries of several run folders, merged per target: a harmful-suite run and an
    over-refusal run of the same model become one entry with both blocks (one point of the scatter).
    A target with two runs of the same kind gets one entry per run, named ``target (suite)``."""
    import json

    from tether.errors import TetherError

    merged: dict[str, dict[str, Any]] = {}
    for folder in run_dirs:
        path = Path(folder) / "summary.json"
        if not path.is_file():
            raise TetherError(f"{folder}: no summary.json (not a finished `tether eval` run)")
        summary = json.loads(path.read_text())
        identity = summary.get("identity", {})
        if "harmful" not in summary and "safe" not in summary:
            raise TetherError(f"{folder}: a {identity.get('suite', '?')} run has no refusal rates to compare")
        name = str(identity.get("target", folder))
        entry = merged.setdefault(name, {"unscored": 0, "unscored_reasons": {}})
        for block in ("harmful", "safe"):
            if block not in summary:
                continue
            if block in entry:
                name = f"{name} ({identity.get('suite', folder)})"
                entry = merged.setdefault(name, {"unscored": 0, "unscored_reasons": {}})
            entry[block] = nan_for_null(summary[block])  # rates with no scored sample are null on disk
        entry["unscored"] += summary.get("unscored", 0)
        entry["unscored_reasons"].update(summary.get("unscored_reasons", {}))
    return merged
