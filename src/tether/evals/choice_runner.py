"""Run multiple-choice suites by log-likelihood on a local model; resumable, every score kept.

Per question: ``pred`` is the option with the highest summed log-prob (lm-evaluation-harness ``acc``),
``pred_norm`` the highest log-prob per character of the option (``acc_norm``). A suite's further metrics
(TruthfulQA's MC2, BBQ's bias scores) come from the choice-metric registry (:mod:`tether.evals.choice_metrics`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console

from tether.atomic import atomic_write_json
from tether.config import EvalConfig
from tether.data.samples import ChoiceSample
from tether.evals.calibration import reliability_bins, risk_coverage
from tether.evals.choice_metrics import answer_uncertainty, get_choice_metric
from tether.evals.loglikelihood import option_loglikelihoods
from tether.runs.store import SampleStore
from tether.stats import rate


def choice_record(sample: ChoiceSample, suite: str, scores: list[tuple[float, int]]) -> dict[str, Any]:
    lls = [s for s, _ in scores]
    per_char = [ll / max(len(c), 1) for ll, c in zip(lls, sample.choices, strict=True)]
    return {
        "id": sample.id,
        "suite": suite,
        "category": sample.category,
        "context": sample.context,
        "choices": list(sample.choices),
        "correct": list(sample.correct),
        "loglikelihoods": lls,
        "tokens": [n for _, n in scores],
        "pred": max(range(len(lls)), key=lls.__getitem__),
        "pred_norm": max(range(len(lls)), key=per_char.__getitem__),
        "source": sample.source,
        "meta": sample.meta,
    }


ALWAYS = ("calibration",)
"""Choice metrics every suite reports (:mod:`tether.evals.choice_metrics`)."""


def summarize_choices(metrics: Sequence[str], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``acc`` and ``acc_norm`` with intervals, calibration, and the suite's registered ``metrics``
    (:mod:`tether.evals.choice_metrics`), overall and per category; the overall reliability diagram's bins and
    risk-coverage curve for the report."""
    extra = [get_choice_metric(name) for name in (*ALWAYS, *metrics)]

    def block(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n": len(rows),
            "acc": rate([r["pred"] in r["correct"] for r in rows]).to_dict(),
            "acc_norm": rate([r["pred_norm"] in r["correct"] for r in rows]).to_dict(),
        }
        for metric in extra:
            out.update(metric(rows))
        return out

    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_category[r["category"]].append(r)
    summary: dict[str, Any] = {
        "n": len(records),
        "overall": block(records),
        "categories": {c: block(rs) for c, rs in sorted(by_category.items())},
    }
    if records:
        confidence, _, right = answer_uncertainty(records)
        summary["reliability"] = [asdict(b) for b in reliability_bins(confidence, right)]
        coverage, risk, _ = risk_coverage(confidence, right)
        summary["risk_coverage"] = {"coverage": coverage, "risk": risk}
    return summary


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return "n/a" if value["n"] == 0 else f"{value['value']:.1%} [{value['low']:.1%}, {value['high']:.1%}]"
    return "n/a" if math.isnan(value) else f"{value:+.3f}"


def write_choice_report(path: Path, title: str, summary: dict[str, Any]) -> Path:
    """Overall and per-category metrics with their 95% intervals, and accuracy by category as bars."""
    from tether.report.html import page, section, table, write_html
    from tether.report.plots import grouped_bars

    metrics = [k for k in summary["overall"] if k != "n"]
    rows = [["all", summary["overall"]["n"], *(_cell(summary["overall"][m]) for m in metrics)]]
    rows += [[c, v["n"], *(_cell(v[m]) for m in metrics)] for c, v in summary["categories"].items()]
    categories = list(summary["categories"])
    chart = grouped_bars(
        categories,
        {"acc": [v["acc"]["value"] for v in summary["categories"].values()]},
        "accuracy by category",
        "%",
        percent=True,
    )
    parts = [
        section(
            "Scores (95% bootstrap intervals; bias scores range from -1 to 1)",
            table(["category", "n", *metrics], rows),
            chart,
        )
    ]
    if summary.get("reliability"):
        parts.append(calibration_section(summary))
    return write_html(path, page(title, parts))


def calibration_section(summary: dict[str, Any]) -> str:
    """The reliability diagram (accuracy against confidence per bin, the diagonal is perfect calibration) and
    the risk-coverage curve of the overall answers."""
    from tether.report.html import paragraph, section
    from tether.report.plots import line_chart

    filled = [b for b in summary["reliability"] if b["count"]]
    diagram = line_chart(
        {
            "model": [(100 * b["confidence"], 100 * b["accuracy"]) for b in filled],
            "perfect calibration": [(0.0, 0.0), (100.0, 100.0)],
        },
        "reliability diagram",
        "confidence (%)",
        "accuracy (%)",
    )
    curve = summary["risk_coverage"]
    points = [(100 * c, 100 * r) for c, r in zip(curve["coverage"], curve["risk"], strict=True)]
    risk = line_chart(
        {"answers kept, most confident first": points},
        "risk-coverage",
        "coverage (%)",
        "error rate (%)",
    )
    counts = ", ".join(f"{b['low']:.1f}-{b['high']:.1f}: {b['count']}" for b in filled)
    return section("Calibration (confidence: the softmax over options)", diagram, risk, paragraph(f"Bins: {counts}."))


def run_choice_suite(
    config: EvalConfig, suite: Any, samples: list[ChoiceSample], store: SampleStore, *, console: Console
) -> dict:
    """Score every question not yet in ``store`` with the local ``config.model`` (``run_eval`` has refused
    an endpoint), then write summary.json and report.html."""
    from tether.report.progress import steps
    from tether.targets import LocalTarget

    model, tokenizer = LocalTarget(config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code).load()
    todo = [s for s in samples if not store.done(s.id)]
    console.print(f"[bold]{suite.name}[/]: {len(samples)} questions ({len(samples) - len(todo)} already scored)")
    with steps(console, "score options", len(todo), enabled=config.progress) as bar:

        def save(indices: list[int], results: list[list[tuple[float, int]]]) -> None:
            store.append(choice_record(todo[i], suite.name, r) for i, r in zip(indices, results, strict=True))
            bar.advance(len(indices))

        option_loglikelihoods(model, tokenizer, todo, batch_size=max(1, config.batch_size // 4), on_batch=save)
    records = [store.records[s.id] for s in samples]
    summary = summarize_choices(suite.metrics, records)
    summary["identity"] = json.loads((Path(config.out) / "run.json").read_text())
    atomic_write_json(Path(config.out) / "summary.json", summary)
    write_choice_report(Path(config.out) / "report.html", f"tether eval {suite.name}: {config.model}", summary)
    overall = summary["overall"]
    parts = [
        f"{k} {v['value']:.1%} [{v['low']:.1%}, {v['high']:.1%}]" if isinstance(v, dict) else f"{k} {v:+.3f}"
        for k, v in overall.items()
        if k != "n"
    ]
    console.print(f"{suite.name} ({overall['n']} questions): " + "; ".join(parts))
    out = Path(config.out)
    console.print(f"samples: {store.path}  summary: {out / 'summary.json'}  report: {out / 'report.html'}")
    return summary
