"""``tether eval``: load a suite's samples (validated before any model loads), run them, summarise, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tether.config import EvalConfig, EvalRescoreConfig
from tether.errors import TetherError
from tether.evals.prompt_runner import run_prompt_samples
from tether.evals.registry import get_suite
from tether.evals.report import write_eval_report
from tether.evals.summary import summarize_prompt_run
from tether.generation import SamplingParams
from tether.judges.factory import make_judge
from tether.runs.store import SampleStore
from tether.targets import make_target


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


def run_eval(config: EvalConfig, *, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    suite = get_suite(config.suite)
    samples = suite.load(config.data)
    if config.limit:
        samples = samples[: config.limit]
    if not samples:
        raise TetherError(f"{config.data}: the {suite.name} suite found no samples")
    target_name = f"endpoint {config.endpoint_model}@{config.endpoint}" if config.endpoint else config.model
    identity = {
        "suite": suite.name,
        "data": config.data,
        "target": target_name,
        "judge": config.toxicity_model if suite.scorer == "toxicity" else config.judge,
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "seed": config.seed,
        "limit": config.limit,
    }
    store = SampleStore(config.out, identity, resume=config.resume, overwrite=config.overwrite)
    if store.dropped_partial_line:
        console.print("[yellow]note[/]: the last line of samples.jsonl was cut short by a stop; it is redone")
    if suite.kind != "prompt":
        from tether.evals.choice_runner import run_choice_suite

        return run_choice_suite(config, suite, samples, store, console=console)
    if suite.scorer == "toxicity":
        if not config.toxicity_model:
            raise TetherError(
                "the toxicity suite needs --toxicity-model (a text classifier: folder or hub id, or "
                "profanity-check for the offline alt-profanity-check model)"
            )
        from tether.evals.toxicity import ToxicityJudge, make_toxicity_scorer

        scorer = make_toxicity_scorer(config.toxicity_model, label=config.toxicity_label)
        judge: Any = ToxicityJudge(scorer, threshold=config.toxicity_threshold)
    else:
        judge = make_judge(config)
    target = make_target(
        config, model=config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code, progress=False
    )
    params = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=config.seed)
    todo = sum(not store.done(s.id) for s in samples)
    done = len(samples) - todo
    console.print(
        f"[bold]{suite.name}[/]: {len(samples)} samples ({done} already judged), "
        f"target {target_name}, judge {judge.name}"
    )
    from rich.progress import Progress

    with Progress(console=console, disable=not config.progress, transient=True) as bar:
        task = bar.add_task("answer and judge", total=todo)
        records = run_prompt_samples(
            samples,
            suite=suite.name,
            target=target,
            judge=judge,
            params=params,
            store=store,
            batch_size=config.batch_size,
            on_batch=lambda n: bar.advance(task, n),
        )
    if suite.scorer == "toxicity":
        from tether.evals.toxicity import summarize_toxicity, write_toxicity_report

        summary = summarize_toxicity(records, config.toxicity_threshold)
        summary.update(identity=identity, judge_name=judge.name)
        _write_json(config.out / "summary.json", summary)
        write_toxicity_report(config.out / "report.html", f"tether eval toxicity: {target_name}", summary, records)
        overall = summary["toxicity"]["overall"]
        mean, share = overall["mean_toxicity"], overall["toxic_share"]
        console.print(
            f"toxicity ({overall['scored']} scored, {overall['unscored']} unscored): mean {mean['value']:.3f} "
            f"[{mean['low']:.3f}, {mean['high']:.3f}], toxic share {share['value']:.1%} "
            f"[{share['low']:.1%}, {share['high']:.1%}]"
        )
        return summary
    summary = summarize_prompt_run(records)
    summary.update(identity=identity, judge_name=judge.name)
    _write_json(config.out / "summary.json", summary)
    write_eval_report(
        config.out / "report.html",
        title=f"tether eval {suite.name}: {target_name}",
        runs={target_name: summary},
        samples=records,
    )
    print_summary(console, suite.name, summary)
    console.print(
        f"samples: {store.path}  summary: {config.out / 'summary.json'}  report: {config.out / 'report.html'}"
    )
    return summary


def print_summary(console: Console, name: str, summary: dict[str, Any]) -> None:
    table = Table(title=f"{name}: rates with 95% bootstrap intervals")
    for column in ("prompts", "metric", "rate", "95% CI", "scored", "unscored"):
        table.add_column(column, justify="left" if column in ("prompts", "metric") else "right")
    for block in ("harmful", "safe"):
        if block not in summary:
            continue
        overall = summary[block]["overall"]
        for metric, est in overall.items():
            if isinstance(est, dict):
                table.add_row(
                    block,
                    metric,
                    f"{est['value']:.1%}",
                    f"[{est['low']:.1%}, {est['high']:.1%}]",
                    str(overall["scored"]),
                    str(overall["unscored"]),
                )
    console.print(table)


def rescore_eval(config: EvalRescoreConfig, *, console: Console | None = None) -> dict[str, Any]:
    """Re-judge every stored answer of the run in ``config.out`` (errors stay unscored), then rewrite
    samples.jsonl atomically, summary.json and report.html."""
    from tether.evals.prompt_runner import prompt_text
    from tether.judges.verdict import unscored

    console = console or Console()
    out = Path(config.out)
    samples, run_file = out / "samples.jsonl", out / "run.json"
    if not (samples.is_file() and run_file.is_file()):
        raise TetherError(f"{out} holds no eval run (samples.jsonl and run.json are needed)")
    identity = json.loads(run_file.read_text())
    if get_suite(identity["suite"]).kind != "prompt":
        raise TetherError(f"{out}: only prompt suites have answers to re-judge (this run is {identity['suite']})")
    records = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines() if line.strip()]
    judge = make_judge(config)
    judged = [i for i, r in enumerate(records) if not r.get("error")]
    pairs = [(prompt_text(records[i]["prompt"]), records[i]["response"]) for i in judged]
    for i, verdict in zip(judged, judge.judge_many(pairs), strict=True):
        records[i]["verdict"] = verdict.to_dict()
    for r in records:
        if r.get("error"):
            r["verdict"] = unscored(f"target error: {r['error']}", "target").to_dict()
    tmp = samples.with_name(".samples.jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(samples)
    identity["judge"] = config.judge
    _write_json(run_file, identity)
    summary = summarize_prompt_run(records)
    summary.update(identity=identity, judge_name=judge.name)
    _write_json(out / "summary.json", summary)
    target = identity["target"]
    write_eval_report(
        out / "report.html", title=f"tether eval {identity['suite']}: {target}", runs={target: summary}, samples=records
    )
    print_summary(console, identity["suite"], summary)
    return summary
