"""`tether unlearn-eval`: the measures of :mod:`tether.unlearning.measure` and the relearning attack, one run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether.atomic import atomic_write_json, atomic_write_text
from tether.config import dump_config
from tether.data.benchmarks.facts import SPLITS, facts_path, read_facts
from tether.runs.folders import check_run_folder, open_run_folder
from tether.unlearning.config import UnlearnEvalConfig
from tether.unlearning.measure import measure_facts
from tether.unlearning.relearn import relearning_curve

KIND = "unlearn-eval"


def run_unlearn_eval(config: UnlearnEvalConfig, *, console: Any = None) -> dict[str, Any]:
    """Facts checked and the run folder checked first, then the model loaded, measured and attacked."""
    facts = read_facts(config.facts)
    check_run_folder(config.out, KIND, overwrite=config.overwrite)
    from tether.models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code, revision=config.revision)
    model = load_model(config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code,
                       revision=config.revision)  # fmt: skip
    out = open_run_folder(config.out, KIND, overwrite=config.overwrite)
    atomic_write_text(out / "config.yaml", dump_config(config))
    if console is not None:
        counts = ", ".join(f"{sum(f.split == s for f in facts)} {s}" for s in SPLITS)
        console.print(f"[bold]unlearn-eval[/]: {config.model} on {len(facts)} facts ({counts})", highlight=False)
    result: dict[str, Any] = {"model": config.model, "facts": str(facts_path(config.facts))}
    result |= measure_facts(model, tokenizer, facts, k=config.k, batch_size=config.batch_size)
    if config.relearn_steps and max(config.relearn_steps) > 0:
        result["relearning"] = relearning_curve(model, tokenizer, facts, config, out / "relearn")
    atomic_write_json(out / "eval.json", result)
    write_report(out / "report.html", result)
    if console is not None:
        console.print(summary_line(result), highlight=False)
    return result


def summary_line(result: dict[str, Any]) -> str:
    acc = result["accuracy"]
    parts = [f"{s} {acc[s]['value']:.1%}" for s in SPLITS if s in acc]
    auc = result["membership_auc"]["forget_vs_holdout"]
    parts.append(f"membership AUC {auc:.3f}" if auc is not None else "membership AUC n/a")
    curve = result.get("relearning", {}).get("curve") or []
    if curve:
        parts.append(f"relearned {curve[-1]['accuracy']['value']:.1%} after {curve[-1]['step']} steps")
    return "unlearn-eval: " + ", ".join(parts)


def write_report(path: Path, result: dict[str, Any]) -> Path:
    """The accuracies with intervals, the membership AUCs and the relearning curve, as an HTML page."""
    from tether.report.html import page, paragraph, section, table, write_html
    from tether.report.plots import line_chart

    def cell(estimate: dict[str, float] | None) -> str:
        if estimate is None:
            return "-"
        return f"{estimate['value']:.1%} [{estimate['low']:.1%}, {estimate['high']:.1%}] (n={estimate['n']})"

    accuracy, reworded, min_k = result["accuracy"], result["paraphrase_accuracy"], result["min_k"]
    rows = [[s, cell(accuracy[s]), cell(reworded.get(s)), f"{min_k.get(s, 0):.3f}"] for s in SPLITS if s in accuracy]
    aucs = [[name.split("_vs_")[0], "-" if v is None else f"{v:.3f}"] for name, v in result["membership_auc"].items()]
    parts = [
        section(
            "Cloze accuracy by split (95% bootstrap intervals)",
            table(["split", "accuracy", "paraphrased", f"mean min-{min_k['k']:.0%} log-prob"], rows),
            paragraph(f"Chance: {result['chance']:.1%}."),
        ),
        section(
            "Membership inference (min-k% probability, ROC AUC)",
            table(["members against holdout", "AUC"], aucs),
            paragraph("About 1: the model tells these facts from never-seen ones; about 0.5: it cannot."),
        ),
    ]
    relearning = result.get("relearning") or {}
    if relearning.get("curve"):
        points = [(p["step"], 100 * p["accuracy"]["value"]) for p in relearning["curve"]]
        parts.append(
            section(
                f"Relearning attack: fine-tuned on {relearning['tuned_on']} forget facts, "
                f"measured on the other {relearning['measured']}",
                line_chart({"measured forget facts": points}, "relearning", "fine-tuning steps", "accuracy (%)"),
            )
        )
    return write_html(path, page(f"tether unlearn-eval: {result['model']}", parts))
