"""Run open-question suites on a local model: answers, their uncertainty scores, calibration; resumable.

Questions are answered and scored in batches of ``--batch-size`` (:func:`tether.evals.qa_uncertainty.qa_records`),
each batch saved to ``samples.jsonl`` before the next, so ``--resume`` continues after the last one. The
summary (:func:`tether.evals.qa_uncertainty.summarize_qa`) is computed overall and per category.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console

from tether.atomic import atomic_write_json
from tether.config import EvalConfig
from tether.data.samples import QASample
from tether.evals.qa_uncertainty import UNCERTAINTIES, qa_records, summarize_qa
from tether.runs.store import SampleStore


def summarize_by_category(records: list[dict[str, Any]]) -> dict[str, Any]:
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_category[record["category"]].append(record)
    return {
        "overall": summarize_qa(records),
        "categories": {c: summarize_qa(rs) for c, rs in sorted(by_category.items())},
    }


def run_qa_suite(
    config: EvalConfig, suite: Any, samples: list[QASample], store: SampleStore, *, console: Console
) -> dict[str, Any]:
    """Answer and score every question not yet in ``store`` with ``config.model``; write summary and report."""
    from tether.report.progress import steps
    from tether.targets import LocalTarget

    model, tokenizer = LocalTarget(config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code).load()
    todo = [s for s in samples if not store.done(s.id)]
    console.print(
        f"[bold]{suite.name}[/]: {len(samples)} questions ({len(samples) - len(todo)} already answered), "
        f"{config.samples} samples each at temperature {config.sample_temperature}"
    )
    with steps(console, "answer and score", len(todo), enabled=config.progress) as bar:
        for start in range(0, len(todo), config.batch_size):
            batch = todo[start : start + config.batch_size]
            records = qa_records(
                model,
                tokenizer,
                batch,
                samples=config.samples,
                temperature=config.sample_temperature,
                max_new_tokens=config.max_new_tokens,
                batch_size=min(config.batch_size, 16),
                seed=config.seed,
            )
            store.append({**r, "suite": suite.name, "source": s.source} for r, s in zip(records, batch, strict=True))
            bar.advance(len(batch))
    records = [store.records[s.id] for s in samples]
    summary: dict[str, Any] = {"n": len(records), **summarize_by_category(records)}
    summary["identity"] = json.loads((Path(config.out) / "run.json").read_text())
    atomic_write_json(Path(config.out) / "summary.json", summary)
    write_qa_report(Path(config.out) / "report.html", f"tether eval {suite.name}: {config.model}", summary)
    console.print(summary_line(suite.name, summary["overall"]), highlight=False)
    out = Path(config.out)
    console.print(f"samples: {store.path}  summary: {out / 'summary.json'}  report: {out / 'report.html'}")
    return summary


def _num(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def summary_line(name: str, overall: dict[str, Any]) -> str:
    acc = overall["accuracy"]
    aurocs = ", ".join(f"{k} {_num(v['auroc_wrong'])}" for k, v in overall["uncertainty"].items())
    return (
        f"{name} ({overall['n']} questions): accuracy {acc['value']:.1%} [{acc['low']:.1%}, {acc['high']:.1%}]; "
        f"AUROC for wrong answers: {aurocs}; ECE p(True) {_num(overall['calibration']['p_true']['ece'])}"
    )


def write_qa_report(path: Path, title: str, summary: dict[str, Any]) -> Path:
    """Accuracy per category, each uncertainty's AUROC/PRR/AURC, and the reliability diagrams."""
    from tether.report.html import page, section, table, write_html
    from tether.report.plots import line_chart

    def acc(block: dict[str, Any]) -> str:
        a = block["accuracy"]
        return f"{a['value']:.1%} [{a['low']:.1%}, {a['high']:.1%}]"

    overall = summary["overall"]
    accuracy_rows = [["all", overall["n"], acc(overall)]]
    accuracy_rows += [[c, b["n"], acc(b)] for c, b in summary["categories"].items()]
    score_rows = [
        [name, _num(s["auroc_wrong"]), _num(s["prr"]), _num(s["aurc"])]
        for name, s in overall["uncertainty"].items()
        if name in UNCERTAINTIES
    ]
    diagrams = {
        name: [(100 * b["confidence"], 100 * b["accuracy"]) for b in c["reliability"] if b["count"]]
        for name, c in overall["calibration"].items()
    }
    diagrams["perfect calibration"] = [(0.0, 0.0), (100.0, 100.0)]
    ece = ", ".join(f"{name} {_num(c['ece'])}" for name, c in overall["calibration"].items())
    parts = [
        section(
            "Accuracy (a normalised reference in the greedy answer; 95% intervals)",
            table(["category", "n", "accuracy"], accuracy_rows),
        ),
        section(
            "Uncertainty: does it single out the wrong answers? (AUROC and PRR: higher is better; AURC: lower)",
            table(["score", "AUROC", "PRR", "AURC"], score_rows),
        ),
        section(f"Calibration (ECE: {ece})", line_chart(diagrams, "reliability", "confidence (%)", "accuracy (%)")),
    ]
    return write_html(path, page(title, parts))
