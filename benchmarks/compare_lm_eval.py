"""BBQ: `tether eval --suite bbq` against lm-evaluation-harness's `bbq` task, same model and rows, one run.

Run (the first 50 rows of each of the four shared BBQ categories)::

    .venv/bin/pip install -e '.[bench]'      # lm_eval, for the peer run only
    .venv/bin/python benchmarks/compare_lm_eval.py --per-category 50 --json compare_lm_eval.json

What runs: the first ``--per-category`` rows (file order) of each ``../shared/data/bbq/*.jsonl`` are
written to a temporary folder; both tools score exactly those rows with the embedded SmolLM2-135M-Instruct
(fp32, CPU, no chat template), each in a fresh process:

- tether: ``tether eval --suite bbq --data FOLDER`` (lm-eval's formulation: context
  ``"{context}\\n\\nQ: {question}\\nA:"``, the two group answers plus ten "unknown" phrasings, bias scores
  of Parrish et al. 2022 as lm-eval aggregates them). Each question's context runs once and its KV cache
  is reused for the 12 options.
- lm-eval: ``lm_eval.simple_evaluate`` with a task that includes lm-eval's own
  ``bbq_multiple_choice.yaml`` and only points ``dataset_path`` at the same JSON files; ``hf`` model,
  ``--lm-eval-batch-size`` requests per batch. It scores every (context, option) sequence in full.

Reported: accuracy (all, ambiguous, disambiguated) and both bias scores from each tool, their differences
in points, per-question agreement of the predicted option (from lm-eval's logged samples), wall time of
each process (model loading included) and its peak RSS, and the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from common import SHARED_DATA, command_line, machine_info, markdown_table, run_child

BBQ = SHARED_DATA / "bbq"
METRICS = {  # lm-eval name -> tether name
    "acc": "acc",
    "accuracy_amb": "acc_ambig",
    "accuracy_disamb": "acc_disambig",
    "amb_bias_score": "bias_ambig",
    "disamb_bias_score": "bias_disambig",
}


def lm_eval_child(spec_path: Path) -> None:
    """Run lm-eval's bbq task on the prepared files; write its metrics and per-question predictions."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    spec = json.loads(spec_path.read_text())
    manager = TaskManager(include_path=spec["task_dir"])
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={spec['model_dir']},dtype=float32",
        tasks=["bbq_tether_local"],
        batch_size=spec["batch_size"],
        device="cpu",
        task_manager=manager,
        log_samples=True,
    )
    metrics = {k.split(",")[0]: v for k, v in results["results"]["bbq_tether_local"].items() if "," in k}
    predictions = {}
    for sample in results["samples"]["bbq_tether_local"]:
        doc = sample["doc"]
        lls = [float(r[0]) for r in sample["filtered_resps"]]
        predictions[f"{doc['category']}:{doc['example_id']}"] = max(range(len(lls)), key=lls.__getitem__)
    Path(spec["result"]).write_text(json.dumps({"metrics": metrics, "predictions": predictions}))


def write_task(task_dir: Path, files: list[Path]) -> None:
    import lm_eval

    base = Path(lm_eval.__file__).parent / "tasks" / "bbq" / "bbq_multiple_choice.yaml"
    (task_dir / "bbq_tether_local.yaml").write_text(
        textwrap.dedent(
            f"""\
            include: {base}
            task: bbq_tether_local
            tag: []
            dataset_path: json
            dataset_name: null
            dataset_kwargs:
              data_files:
                test: {json.dumps([str(f) for f in files])}
            test_split: test
            """
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-category", type=int, default=50)
    parser.add_argument("--lm-eval-batch-size", type=int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--lm-eval-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.lm_eval_child:
        lm_eval_child(args.lm_eval_child)
        return
    if not BBQ.is_dir():
        sys.exit(f"shared BBQ data not found at {BBQ}")
    from tether.models.embedded import DEFAULT_MODEL
    from tether.models.loading import resolve

    model_dir = resolve(DEFAULT_MODEL)
    command = command_line()
    machine = machine_info(("torch", "transformers", "lm_eval"))
    print(f"$ {command}")
    with tempfile.TemporaryDirectory(prefix="tether-bench-bbq-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        files = []
        for source in sorted(BBQ.glob("*.jsonl")):
            lines = [line for line in source.read_text().splitlines() if line.strip()][: args.per_category]
            files.append(data / source.name)
            files[-1].write_text("\n".join(lines) + "\n")
        rows = args.per_category * len(files)
        (work / "tasks").mkdir()
        write_task(work / "tasks", files)

        print(f"tether on {rows} questions ...", flush=True)
        tether = run_child(
            [
                sys.executable,
                "-m",
                "tether",
                "eval",
                "--suite",
                "bbq",
                "--data",
                str(data),
                "--out",
                str(work / "tether"),
                "--no-progress",
            ],
            work / "tether.log",
        )
        if tether.returncode != 0:
            sys.exit(f"tether failed:\n{tether.tail()}")
        summary = json.loads((work / "tether" / "summary.json").read_text())["overall"]
        tether_metrics = {k: (v["value"] if isinstance(v, dict) else v) for k, v in summary.items() if k != "n"}
        tether_preds = {
            r["id"]: r["pred"] for r in map(json.loads, (work / "tether" / "samples.jsonl").read_text().splitlines())
        }

        print(f"lm-eval on {rows} questions ...", flush=True)
        spec = {
            "task_dir": str(work / "tasks"),
            "model_dir": model_dir,
            "batch_size": args.lm_eval_batch_size,
            "result": str(work / "lm_eval.json"),
        }
        (work / "spec.json").write_text(json.dumps(spec))
        peer = run_child(
            [sys.executable, str(Path(__file__).resolve()), "--lm-eval-child", str(work / "spec.json")],
            work / "lm_eval.log",
        )
        if peer.returncode != 0:
            sys.exit(f"lm-eval failed:\n{peer.tail()}")
        lm = json.loads((work / "lm_eval.json").read_text())

    same = sum(tether_preds.get(k) == v for k, v in lm["predictions"].items())
    table_rows: list[list[Any]] = []
    for lm_name, ours in METRICS.items():
        a, b = tether_metrics[ours], lm["metrics"][lm_name]
        scale = 100 if lm_name.startswith("acc") else 1
        unit = " pts" if scale == 100 else ""
        table_rows.append([lm_name, f"{a * scale:.2f}", f"{b * scale:.2f}", f"{(a - b) * scale:+.2f}{unit}"])
    report = {
        "command": command,
        "machine": machine,
        "questions": rows,
        "tether": {"metrics": tether_metrics, "wall_s": tether.wall_s, "peak_rss_gib": tether.max_rss_bytes / 2**30},
        "lm_eval": {"metrics": lm["metrics"], "wall_s": peer.wall_s, "peak_rss_gib": peer.max_rss_bytes / 2**30},
        "same_prediction": same / len(lm["predictions"]),
        "speedup": peer.wall_s / tether.wall_s,
    }
    lines = [
        f"Machine: {machine['cpu']}, {machine['usable_cores']} cores, load average {machine['load_avg_1m']} before; "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v),
        "",
        f"{rows} BBQ questions (first {args.per_category} rows of each of {len(files)} shared files), 12 options "
        "each, embedded SmolLM2-135M-Instruct in fp32 on CPU",
        "",
        markdown_table(
            ["metric (accuracy in %, bias in [-1, 1])", "tether", "lm-eval", "tether - lm-eval"], table_rows
        ),
        "",
        f"- same predicted option on {same} of {len(lm['predictions'])} questions "
        f"({100 * report['same_prediction']:.1f}%)",
        f"- wall time (fresh process, model load included): tether {tether.wall_s:.1f} s, lm-eval {peer.wall_s:.1f} s: "
        f"tether is {report['speedup']:.2f}x faster",
        f"- peak RSS: tether {tether.max_rss_bytes / 2**30:.2f} GiB, lm-eval {peer.max_rss_bytes / 2**30:.2f} GiB",
    ]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
