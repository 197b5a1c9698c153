"""Batch use of a guard file without a server: ``tether guard check`` and ``tether guard eval``.

``check`` writes one JSON line per input row: the row's line, the decision (blocked, masked, flagged, by
which rails) and every rail's verdict, score and reason. ``eval`` runs the input rails over labelled texts
(positives that should be flagged, negatives that should not) and reports, per rail and for the whole
pipeline, recall at fixed false-positive rates (the ROC curve read at each rate), the AUROC, and the
configured operating point (the rails' own thresholds and actions) with 95% bootstrap intervals, in
``eval.json`` and an HTML report with ROC plots.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tether.atomic import atomic_open, atomic_write_json
from tether.errors import DataError
from tether.guard.config import GuardCheckConfig, GuardEvalConfig
from tether.guard.pipeline import Decision, Pipeline
from tether.guard.texts import TextRow, read_texts
from tether.jsonsafe import dumps
from tether.stats import rate


def check_rows(
    pipeline: Pipeline, rows: Sequence[TextRow], side: str, response_field: str = "response"
) -> list[Decision]:
    decisions = []
    for row in rows:
        if side == "input":
            decisions.append(pipeline.check_input(row.text))
        else:
            answer = row.row.get(response_field) if row.row else row.text
            if not isinstance(answer, str):
                raise DataError(
                    f"--side output needs a text field {response_field!r}", line=row.line, field=response_field
                )
            prompt = row.text if answer is not row.text else None
            decisions.append(pipeline.check_output(answer, prompt=prompt))
    return decisions


def run_check(config: GuardCheckConfig, *, console: Any = None, embed: Any = None) -> Path:
    """Check every row of ``config.input``; the output file appears whole or not at all."""
    from tether.report.progress import steps

    if config.side == "output":
        rows = read_texts(config.input, text_field=config.text_field or "prompt")
        missing = next((r for r in rows if not isinstance(r.row.get("response"), str)), None)
        if missing is not None:
            raise DataError(
                "--side output needs a 'response' text field", file=config.input, line=missing.line, field="response"
            )
    else:
        rows = read_texts(config.input, text_field=config.text_field)
    pipeline = Pipeline(config, embed=embed)
    try:
        pipeline.warm_up()
        with atomic_open(config.output) as out, steps(console, "check", len(rows), enabled=console is not None) as bar:
            for row in rows:
                decision = check_rows(pipeline, [row], config.side)[0]
                record = {"line": row.line, "text": row.text, **decision.to_dict()}
                if decision.masked:
                    record["masked"] = decision.texts[0]
                out.write(dumps(record) + "\n")
                bar.advance()
    finally:
        pipeline.close()
    return config.output


def recall_at(positive: Sequence[float], negative: Sequence[float], fpr: float) -> dict[str, float]:
    """Recall at the smallest threshold that flags at most ``fpr`` of the negatives (scores flag at >=)."""
    ordered = sorted(negative, reverse=True)
    allowed = int(fpr * len(ordered))
    threshold = ordered[allowed] if allowed < len(ordered) else min(ordered, default=0.0)
    # Strictly above the first negative that must not be flagged.
    flagged = [s > threshold for s in positive] if allowed < len(ordered) else [True] * len(positive)
    false = [s > threshold for s in negative] if allowed < len(ordered) else [True] * len(negative)
    return {
        "fpr": fpr,
        "threshold": threshold,
        "recall": sum(flagged) / max(len(flagged), 1),
        "fpr_measured": sum(false) / max(len(false), 1),
    }


def _sample(rows: list[TextRow], limit: int | None) -> list[TextRow]:
    import hashlib

    if limit is None or len(rows) <= limit:
        return rows
    return sorted(rows, key=lambda r: hashlib.sha256(r.text.encode()).hexdigest())[:limit]


def _rail_scores(decision: Decision) -> dict[str, float]:
    """Each rail's strongest score over the messages (an error counts as 0 here, and is reported apart)."""
    scores: dict[str, float] = {}
    for v in decision.verdicts:
        scores[v.rail] = max(scores.get(v.rail, 0.0), v.detection.score if v.detection.verdict != "error" else 0.0)
    return scores


def run_eval(
    config: GuardEvalConfig,
    *,
    console: Any = None,
    embed: Any = None,
    read: Callable[[str], list[TextRow]] = read_texts,
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score, roc_curve

    from tether.report import html, plots
    from tether.report.progress import steps

    positives = _sample([r for f in config.positive for r in read(f)], config.limit)
    negatives = _sample([r for f in config.negative for r in read(f)], config.limit)
    pipeline = Pipeline(config, embed=embed)
    rows: list[dict[str, Any]] = []
    try:
        pipeline.warm_up()
        with steps(console, "eval", len(positives) + len(negatives), enabled=console is not None) as bar:
            for label, group in ((1, positives), (0, negatives)):
                for row in group:
                    d = pipeline.check_input(row.text)
                    rows.append(
                        {
                            "label": label,
                            "text": row.text,
                            "blocked": d.blocked,
                            "flagged": d.flagged,
                            "errors": sum(v.applied.startswith("error") for v in d.verdicts),
                            "scores": _rail_scores(d),
                            "blocked_by": d.blocked_by,
                        }
                    )
                    bar.advance()
    finally:
        pipeline.close()
    rails = [r.label for r in config.input_rails]
    result: dict[str, Any] = {
        "positives": len(positives),
        "negatives": len(negatives),
        "rails": {},
        "sources": {"positive": config.positive, "negative": config.negative},
    }
    curves = {}
    labels = [r["label"] for r in rows]
    score_of: dict[str, list[float]] = {name: [r["scores"].get(name, 0.0) for r in rows] for name in rails}
    score_of["any rail (max score)"] = [max(r["scores"].values(), default=0.0) for r in rows]
    for name, scores in score_of.items():
        pos = [s for s, y in zip(scores, labels, strict=True) if y]
        neg = [s for s, y in zip(scores, labels, strict=True) if not y]
        entry: dict[str, Any] = {"at_fpr": [recall_at(pos, neg, f) for f in config.fpr]}
        if pos and neg and len(set(scores)) > 1:
            entry["auroc"] = float(roc_auc_score(labels, scores))
            fpr, tpr, _ = roc_curve(labels, scores)
            curves[name] = (fpr.tolist(), tpr.tolist())
        result["rails"][name] = entry
    blocked_pos = [r["blocked"] for r in rows if r["label"]]
    blocked_neg = [r["blocked"] for r in rows if not r["label"]]
    result["pipeline"] = {
        "recall": rate(blocked_pos).to_dict(),
        "fpr": rate(blocked_neg).to_dict(),
        "errors": sum(r["errors"] for r in rows),
    }
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "rows.jsonl") as handle:
        for record in rows:
            handle.write(dumps(record) + "\n")
    atomic_write_json(out / "eval.json", result)
    table_rows = [
        [name, f"{e.get('auroc', float('nan')):.3f}", *[f"{a['recall']:.1%}" for a in e["at_fpr"]]]
        for name, e in result["rails"].items()
    ]
    p = result["pipeline"]
    report = html.page(
        "Guard evaluation",
        [
            html.section(
                "Data",
                html.paragraph(
                    f"{len(positives)} positives from {', '.join(config.positive)}; {len(negatives)} negatives from "
                    f"{', '.join(config.negative)}. Thresholds at each false-positive rate are read from these "
                    "negatives."
                ),
            ),
            html.section(
                "Configured pipeline",
                html.paragraph(
                    f"blocked {p['recall']['value']:.1%} of positives "
                    f"[{p['recall']['low']:.1%}, {p['recall']['high']:.1%}] and "
                    f"{p['fpr']['value']:.1%} of negatives [{p['fpr']['low']:.1%}, {p['fpr']['high']:.1%}] "
                    f"with the rails' own thresholds and actions; {p['errors']} rail errors."
                ),
            ),
            html.section(
                "Recall at fixed false-positive rates",
                html.table(["rail", "AUROC", *[f"recall @ {f:.0%} FPR" for f in config.fpr]], table_rows),
                plots.roc_curves(curves, "ROC per rail", marks=config.fpr),
            ),
        ],
    )
    html.write_html(out / "report.html", report)
    return result


def read_check_output(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
