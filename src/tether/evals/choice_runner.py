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
from pathlib import Path
from typing import Any

from rich.console import Console

from tether.atomic import atomic_write_json
from tether.config import EvalConfig
from tether.data.samples import ChoiceSample
from tether.evals.choice_metrics import get_choice_metric
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


def summarize_choices(metrics: Sequence[str], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``acc`` and ``acc_norm`` with intervals plus the suite's registered ``metrics``
    (:mod:`tether.evals.choice_metrics`), overall and per category."""
    extra = [get_choice_metric(name) for name in metrics]

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
    return {
        "n": len(records),
        "overall": block(records),
        "categories": {c: block(rs) for c, rs in sorted(by_category.items())},
    }


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
    return write_html(path, page(title, parts))


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
