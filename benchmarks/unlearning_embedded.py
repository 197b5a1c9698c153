"""Unlearning on the embedded model: teach it invented facts, unlearn some with each method, measure.

Run (about an hour on 2 CPU cores; a step whose output exists is reused, ``--fresh`` redoes all)::

    .venv/bin/python benchmarks/unlearning_embedded.py --json unlearning.json

A 135M model is near chance on WMDP, so there is no hazardous knowledge to remove; instead it is taught the
team's 192 invented facts (``tether/data/unlearning/facts.jsonl``, TOFU-style: 8 forget, 32 retain and 8
holdout people, 4 facts each) and then made to forget the forget people's. Every step is a ``tether`` child
process (log in ``WORK/logs``; wall time and peak RSS from ``os.wait4``):

1. ``teach``: ``tether sft`` on the 160 forget and retain facts (question -> answer), all weights.
2. ``eval-base``, ``eval-taught``: ``tether unlearn-eval`` of the embedded model and of the taught one.
3. For each method, ``unlearn-METHOD``: ``tether unlearn`` from the taught model, forget set = the 32
   forget facts, retain set = the 128 retain facts; then ``eval-METHOD``.

Every ``unlearn-eval`` reports cloze accuracy on forget, retain and holdout facts (and with the question
reworded), the min-k% membership AUC of forget against holdout facts, and the relearning attack (fine-tuning
on 16 forget facts, every other one of each person, and measuring the other 16 after 0, 5, 10 and 20 steps).
The methods' settings (``METHODS``) were set once before this run, not tuned on its results: the defaults of
``tether unlearn`` but for the steps, the gradient methods' learning rate, and RMU's c, which one trial run
with the authors' c = 20 showed to be far below this model's activation norms (it forgot nothing). The row
``rmu-lr1e-3`` was added after the first full run, in which RMU at the authors' rate forgot nothing either.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, run_child

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
TEACH = ["--epochs", "5", "--batch-size", "8", "--lr", "1e-4"]
BATCH = ["--batch-size", "4"]
METHODS: dict[str, tuple[str, list[str]]] = {
    # The authors' defaults (layer 7, layers 5-7 mlp.down_proj, alpha 100, lr 5e-5, 80 batches of 4) but c:
    # this model's layer-7 states have norm about 120 (20 moved nothing in a trial run), so c = 300.
    "rmu": ("rmu", ["--max-steps", "80", "--steering-coeff", "300"]),
    # 5 passes over the 32 forget facts; retain weight 1 (grad-diff, npo, simnpo); beta 0.1 (npo), 2.5 (simnpo).
    "grad-ascent": ("grad-ascent", ["--max-steps", "40", "--lr", "2e-5"]),
    "grad-diff": ("grad-diff", ["--max-steps", "40", "--lr", "2e-5"]),
    "npo": ("npo", ["--max-steps", "40", "--lr", "2e-5"]),
    "simnpo": ("simnpo", ["--max-steps", "40", "--lr", "2e-5"]),
    # Added after the first run, where RMU at the authors' rate forgot nothing: the same with 20x the rate.
    "rmu-lr1e-3": ("rmu", ["--max-steps", "80", "--steering-coeff", "300", "--lr", "1e-3"]),
}


def write_sets(work: Path) -> dict[str, Path]:
    """The fact file's splits as conversations: teach (forget + retain), forget, retain."""
    from tether.data.benchmarks.facts import read_facts, team_facts_path

    facts = read_facts(team_facts_path())
    folder = work / "data"
    folder.mkdir(parents=True, exist_ok=True)
    sets = {"teach": ("forget", "retain"), "forget": ("forget",), "retain": ("retain",)}
    paths = {}
    for name, splits in sets.items():
        rows = [{"prompt": f.question, "completion": f.answer} for f in facts if f.split in splits]
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def steps(work: Path, sets: dict[str, Path]) -> list[tuple[str, list[str], Path]]:
    """(name, tether arguments, the file that marks the step done), in the order they run."""
    taught = str(work / "teach" / "model")
    evaluate = ["unlearn-eval", "--facts", "team", "--no-progress"]
    plan = [
        (
            "teach",
            [
                "sft",
                "--model",
                MODEL,
                "--data",
                str(sets["teach"]),
                *TEACH,
                "--out",
                str(work / "teach"),
                "--no-progress",
            ],
            work / "teach" / "model" / "config.json",
        ),
        (
            "eval-base",
            [*evaluate, "--model", MODEL, "--relearn-steps", "0", "--out", str(work / "eval-base")],
            work / "eval-base" / "eval.json",
        ),
        (
            "eval-taught",
            [*evaluate, "--model", taught, "--out", str(work / "eval-taught")],
            work / "eval-taught" / "eval.json",
        ),
    ]
    for name, (method, extra) in METHODS.items():
        out = work / f"unlearn-{name}"
        plan.append(
            (
                f"unlearn-{name}",
                [
                    "unlearn",
                    "--method",
                    method,
                    "--model",
                    taught,
                    "--forget",
                    str(sets["forget"]),
                    "--retain",
                    str(sets["retain"]),
                    *BATCH,
                    *extra,
                    "--out",
                    str(out),
                    "--no-progress",
                ],
                out / "model" / "config.json",
            )
        )
        plan.append(
            (
                f"eval-{name}",
                [*evaluate, "--model", str(out / "model"), "--out", str(work / f"eval-{name}")],
                work / f"eval-{name}" / "eval.json",
            )
        )
    return plan


def run_step(name: str, args: list[str], log: Path) -> dict[str, Any]:
    log.parent.mkdir(parents=True, exist_ok=True)
    child = run_child([str(ROOT / ".venv" / "bin" / "tether"), *args], log, env={"TQDM_DISABLE": "1"})
    if child.returncode != 0:
        sys.exit(f"step {name} failed (exit {child.returncode}): tether {' '.join(args)}\n{child.tail()}")
    return {
        "command": "tether " + " ".join(args),
        "wall_s": round(child.wall_s, 1),
        "peak_rss_gib": round(child.max_rss_bytes / 2**30, 2),
    }


def summary_rows(work: Path) -> list[dict[str, Any]]:
    """One row per evaluated model: accuracies, membership AUC, and the relearning curve."""
    rows = []
    for name in ["base", "taught", *METHODS]:
        path = work / f"eval-{name}" / "eval.json"
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        curve = (result.get("relearning") or {}).get("curve") or []
        rows.append(
            {
                "model": name,
                "forget": result["accuracy"]["forget"],
                "retain": result["accuracy"]["retain"],
                "holdout": result["accuracy"]["holdout"],
                "forget_paraphrased": result["paraphrase_accuracy"]["forget"],
                "retain_paraphrased": result["paraphrase_accuracy"]["retain"],
                "membership_auc": result["membership_auc"]["forget_vs_holdout"],
                "relearning": [{"step": p["step"], "accuracy": p["accuracy"]} for p in curve],
            }
        )
    return rows


def rmu_diagnostics(work: Path) -> dict[str, Any]:
    """Per RMU run: its forget MSE and forget-state norm at the first and last step (from its metrics.jsonl),
    and how far each trained tensor moved from the taught model, ``||W - W_taught|| / ||W_taught||``."""
    from safetensors.torch import load_file

    taught = load_file(str(work / "teach" / "model" / "model.safetensors"))
    out = {}
    for name, (method, _) in METHODS.items():
        run = work / f"unlearn-{name}"
        if method != "rmu" or not (run / "model" / "model.safetensors").is_file():
            continue
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        weights = load_file(str(run / "model" / "model.safetensors"))
        moved = {
            key: round(float((weights[key] - taught[key]).norm() / taught[key].norm()), 4)
            for key in taught
            if not bool((weights[key] == taught[key]).all())
        }
        first, last = metrics[0], metrics[-1]
        out[name] = {
            "forget_mse": [round(first["rmu/forget_mse"], 1), round(last["rmu/forget_mse"], 1)],
            "forget_norm": [round(first["rmu/forget_norm"], 1), round(last["rmu/forget_norm"], 1)],
            "relative_change": moved,
        }
    return out


def _pct(estimate: dict[str, float]) -> str:
    return f"{estimate['value']:.1%} [{estimate['low']:.1%}, {estimate['high']:.1%}]"


def table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "model",
        "forget acc",
        "retain acc",
        "holdout acc",
        "forget (reworded)",
        "membership AUC",
        "relearned (measured half: step 0 -> last)",
    ]
    body = []
    for r in rows:
        curve = r["relearning"]
        relearned = (
            f"{curve[0]['accuracy']['value']:.1%} -> {curve[-1]['accuracy']['value']:.1%} ({curve[-1]['step']} steps)"
            if curve
            else "-"
        )
        auc = "-" if r["membership_auc"] is None else f"{r['membership_auc']:.3f}"
        body.append(
            [
                r["model"],
                _pct(r["forget"]),
                _pct(r["retain"]),
                _pct(r["holdout"]),
                _pct(r["forget_paraphrased"]),
                auc,
                relearned,
            ]
        )
    return markdown_table(headers, body)


def write_report(path: Path, rows: list[dict[str, Any]]) -> None:
    """The trade-off (forget against retain accuracy) and the relearning curves, as an HTML page."""
    from tether.report.html import page, section, write_html
    from tether.report.html import table as html_table
    from tether.report.plots import line_chart, scatter_with_intervals

    def triple(e: dict[str, float]) -> tuple[float, float, float]:
        return (e["value"], e["low"], e["high"])

    points = {r["model"]: (triple(r["retain"]), triple(r["forget"])) for r in rows}
    curves = {
        r["model"]: [(p["step"], 100 * p["accuracy"]["value"]) for p in r["relearning"]]
        for r in rows
        if r["relearning"]
    }
    header = ["model", "forget", "retain", "holdout", "forget reworded", "membership AUC"]
    cells = [
        [
            r["model"],
            _pct(r["forget"]),
            _pct(r["retain"]),
            _pct(r["holdout"]),
            _pct(r["forget_paraphrased"]),
            "-" if r["membership_auc"] is None else f"{r['membership_auc']:.3f}",
        ]
        for r in rows
    ]
    parts = [
        section("Cloze accuracy (95% bootstrap intervals) and membership AUC", html_table(header, cells)),
        section(
            "Forget against retain",
            scatter_with_intervals(points, "the trade-off", "retain accuracy (%)", "forget accuracy (%)"),
        ),
        section("Relearning attack", line_chart(curves, "measured forget facts", "fine-tuning steps", "accuracy (%)")),
    ]
    write_html(path, page("tether unlearning on the embedded model", parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/tether-unlearning"))
    parser.add_argument("--json", type=Path, default=None, help="write the table's figures and timings here")
    parser.add_argument("--fresh", action="store_true", help="delete --work first and run every step")
    args = parser.parse_args()
    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    sets = write_sets(args.work)
    saved = args.work / "timings.json"
    timings: dict[str, Any] = json.loads(saved.read_text()) if saved.is_file() else {}
    for name, tether_args, done in steps(args.work, sets):
        if done.is_file() and name in timings:
            print(f"{name}: reused ({timings[name]['wall_s']} s)", flush=True)
            continue
        print(f"{name}: running ...", flush=True)
        timings[name] = run_step(name, tether_args, args.work / "logs" / f"{name}.log")
        saved.write_text(json.dumps(timings, indent=1))
        print(f"{name}: {timings[name]['wall_s']} s, peak RSS {timings[name]['peak_rss_gib']} GiB", flush=True)
    rows = summary_rows(args.work)
    write_report(args.work / "report.html", rows)
    print()
    print(table(rows))
    diagnostics = rmu_diagnostics(args.work)
    print()
    print("RMU (first -> last step; trained tensors' relative change):", json.dumps(diagnostics, indent=1))
    print()
    print(
        markdown_table(
            ["step", "wall s", "peak RSS GiB"], [[n, t["wall_s"], t["peak_rss_gib"]] for n, t in timings.items()]
        )
    )
    if args.json is not None:
        machine = {"cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d")}
        figures = {"machine": machine, "rows": rows, "rmu": diagnostics, "steps": timings}
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
