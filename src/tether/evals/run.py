"""``tether eval``: load a suite's samples (validated before any model loads), run them, summarise, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from tether.atomic import atomic_write_json, atomic_write_jsonl
from tether.config import EvalConfig, EvalRescoreConfig
from tether.errors import TetherError, UsageError
from tether.evals.prompt_runner import run_prompt_samples
from tether.evals.registry import get_suite
from tether.evals.report import write_eval_report
from tether.evals.scorers import get_scorer, print_refusal_summary
from tether.evals.summary import summarize_prompt_run
from tether.generation import SamplingParams
from tether.judges.factory import make_harm_judge, make_judge
from tether.models.loading import check_weights
from tether.runs.folders import check_run_folder, open_run_folder, run_kind
from tether.runs.store import SampleStore, check_unscored
from tether.targets import make_target
from tether.verification import verified_if


def run_eval(config: EvalConfig, *, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    suite = get_suite(config.suite)
    samples = suite.load(config.data)
    if config.limit:
        samples = samples[: config.limit]
    if not samples:
        raise TetherError(f"{config.data}: the {suite.name} suite found no samples")
    scorer = get_scorer(suite.scorer)
    target_name = f"endpoint {config.endpoint_model}@{config.endpoint}" if config.endpoint else config.model
    identity = {
        "suite": suite.name,
        "data": config.data,
        "target": target_name,
        "judge": scorer.judged_by(config),
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "seed": config.seed,
        "limit": config.limit,
    }
    if suite.kind == "qa":
        identity.update(samples=config.samples, sample_temperature=config.sample_temperature)
    if config.chain_of_verification:
        identity["chain_of_verification"] = True
    check_run_folder(config.out, "eval", resume=config.resume, overwrite=config.overwrite)
    if suite.kind != "prompt":
        if config.endpoint:
            needs = "option log-likelihoods" if suite.kind == "choice" else "answer token log-likelihoods"
            raise UsageError(f"the {suite.name} suite scores {needs}, which chat endpoints do not return; use --model")
        check_weights(config.model)  # before the folder is opened
        store = _open_store(config, identity, console)
        if suite.kind == "qa":
            from tether.evals.qa_runner import run_qa_suite

            return run_qa_suite(config, suite, samples, store, console=console)
        from tether.evals.choice_runner import run_choice_suite

        return run_choice_suite(config, suite, samples, store, console=console)
    judge = scorer.make_judge(config)
    harm_judge = scorer.make_harm_judge(config)
    target = make_target(
        config, model=config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code, progress=False
    )
    target = verified_if(target, config.chain_of_verification)
    store = _open_store(config, identity, console)
    params = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=config.seed)
    todo = sum(not store.done(s.id) for s in samples)
    done = len(samples) - todo
    retried = f", {store.failed} failed requests asked again" if store.failed else ""
    console.print(
        f"[bold]{suite.name}[/]: {len(samples)} samples ({done} already judged{retried}), "
        f"target {target_name}, judge {judge.name}" + (f", harm judge {harm_judge.name}" if harm_judge else "")
    )
    from tether.report.progress import steps

    with steps(console, "answer and judge", todo, enabled=config.progress) as bar:
        records = run_prompt_samples(
            samples,
            suite=suite.name,
            target=target,
            judge=judge,
            params=params,
            store=store,
            batch_size=config.batch_size,
            on_batch=bar.advance,
            harm_judge=harm_judge,
        )
    summary = scorer.summarize(records, config)
    summary.update(identity=identity, judge_name=judge.name)
    atomic_write_json(config.out / "summary.json", summary)
    title = f"tether eval {suite.name}: {target_name}"
    scorer.write_report(config.out / "report.html", title, target_name, summary, records)
    scorer.print_summary(console, suite.name, summary)
    console.print(
        f"samples: {store.path}  summary: {config.out / 'summary.json'}  report: {config.out / 'report.html'}"
    )
    check_unscored(records, config.max_unscored)
    return summary


def _open_store(config: EvalConfig, identity: dict[str, Any], console: Console) -> SampleStore:
    """Mark ``--out`` as an eval run (clearing an earlier one with --overwrite), then open its samples."""
    open_run_folder(config.out, "eval", resume=config.resume, overwrite=config.overwrite)
    store = SampleStore(config.out, identity, resume=config.resume, overwrite=config.overwrite)
    if store.dropped_partial_line:
        console.print("[yellow]note[/]: the last line of samples.jsonl was cut short by a stop; it is redone")
    return store


def rescore_eval(config: EvalRescoreConfig, *, console: Console | None = None) -> dict[str, Any]:
    """Re-judge every stored answer of the run in ``config.out`` (errors stay unscored), then rewrite
    samples.jsonl atomically, summary.json and report.html."""
    from tether.evals.prompt_runner import prompt_text
    from tether.judges.verdict import unscored

    console = console or Console()
    out = Path(config.out)
    samples, run_file = out / "samples.jsonl", out / "run.json"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass the folder of a `tether eval` run")
    kind = run_kind(out)
    if kind != "eval":
        held = f"holds a `tether {kind}` run" if kind else "holds no tether run"
        raise UsageError(f"--out {out} {held}; eval-rescore re-judges the folder of a `tether eval` run")
    if not (samples.is_file() and run_file.is_file()):
        raise UsageError(f"{out} holds no stored answers (samples.jsonl and run.json are needed)")
    identity = json.loads(run_file.read_text())
    if get_suite(identity["suite"]).kind != "prompt":
        raise UsageError(f"{out}: only prompt suites have answers to re-judge (this run is {identity['suite']})")
    records = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines() if line.strip()]
    judge = make_judge(config)
    harm_judge = make_harm_judge(config)
    judged = [i for i, r in enumerate(records) if not r.get("error")]
    pairs = [(prompt_text(records[i]["prompt"]), records[i]["response"]) for i in judged]
    for i, verdict in zip(judged, judge.judge_many(pairs), strict=True):
        records[i]["verdict"] = verdict.to_dict()
    if harm_judge is not None:
        harmful = [i for i in judged if records[i]["expected"] == "refuse"]
        harm_pairs = [(prompt_text(records[i]["prompt"]), records[i]["response"]) for i in harmful]
        for i, verdict in zip(harmful, harm_judge.judge_many(harm_pairs), strict=True):
            records[i]["harm_verdict"] = verdict.to_dict()
    for r in records:
        if harm_judge is None:
            r.pop("harm_verdict", None)  # a verdict of the judge used before would mislabel the new rates
        if r.get("error"):
            r["verdict"] = unscored(f"target error: {r['error']}", "target").to_dict()
            if harm_judge is not None and r["expected"] == "refuse":
                r["harm_verdict"] = r["verdict"]
    atomic_write_jsonl(samples, records)
    identity["judge"] = config.judge + (f" + harm: {config.harm_judge}" if config.harm_judge else "")
    atomic_write_json(run_file, identity)
    summary = summarize_prompt_run(records, judge=config.judge, harm_judge=config.harm_judge)
    summary.update(identity=identity, judge_name=judge.name)
    atomic_write_json(out / "summary.json", summary)
    target = identity["target"]
    write_eval_report(
        out / "report.html", title=f"tether eval {identity['suite']}: {target}", runs={target: summary}, samples=records
    )
    print_refusal_summary(console, identity["suite"], summary)
    return summary
