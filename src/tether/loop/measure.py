"""Measure one model on the loop's eval sets (one `tether eval` run each) and read off both axes.

For each set: on its harmful prompts, the share of scored answers that comply (``harmful_complied``: the
harm axis, want low); on its safe prompts, the share refused fully or partly (``safe_refused``: the
over-refusal axis, want low); each a 95% bootstrap interval (:func:`tether.stats.rate`), judged by the
loop's refusal judge, unscored answers left out and counted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from tether.loop.config import EvalSet, LoopConfig

AXES = {
    "harmful_complied": ("harmful", "attack_success", "harmful requests complied with"),
    "safe_refused": ("safe", "any_refusal", "safe requests refused (fully or partly)"),
}
"""Headline key -> (summary block, metric, label)."""


def check_eval_sets(evals: Sequence[EvalSet]) -> None:
    """Each set's suite exists, answers prompts, and its data reads (file:line errors, no model)."""
    from tether.errors import ConfigError
    from tether.evals.registry import get_suite

    for i, item in enumerate(evals):
        suite = get_suite(item.suite)
        if suite.kind != "prompt":
            raise ConfigError(
                f"the {item.suite} suite scores choices, not answers; the loop measures refusal",
                field=f"evals.{i}.suite",
            )
        if not suite.load(item.data):
            raise ConfigError(f"{item.data}: the {item.suite} suite found no prompts", field=f"evals.{i}.data")


def headline(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The axes an eval summary holds: key -> {value, low, high, n, k, unscored}."""
    found = {}
    for key, (block, metric, _) in AXES.items():
        if block in summary:
            found[key] = summary[block]["overall"][metric]
    return found


def _examples(folder: Path, limit: int) -> list[dict[str, Any]]:
    rows = []
    path = folder / "samples.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines()[:limit] if limit else []:
        record = json.loads(line)
        prompt = record["prompt"] if isinstance(record["prompt"], str) else record["prompt"][-1]["content"]
        rows.append(
            {"id": record["id"], "prompt": prompt, "response": record["response"], "label": record["verdict"]["label"]}
        )
    return rows


def measure(config: LoopConfig, model: str, folder: Path, console: Console) -> dict[str, Any]:
    """Every eval set on ``model`` under ``folder/eval/<name>`` (finished ones read back): name -> headline
    rates, the eval's judge, and the first ``config.examples`` answers."""
    from tether.config import EvalConfig
    from tether.evals.run import run_eval

    results = {}
    for item in config.evals:
        out = folder / "eval" / item.name
        if not (out / "summary.json").exists():
            console.print(f"[bold]measure[/] {item.name} ({item.suite}, {item.data}) on {model}", highlight=False)
            run_eval(
                EvalConfig(
                    model=model,
                    suite=item.suite,
                    data=item.data,
                    out=out,
                    limit=item.limit,
                    judge=config.judge,
                    max_new_tokens=config.max_new_tokens,
                    batch_size=config.batch_size,
                    seed=config.seed,
                    generation_backend=config.generation_backend,
                    resume=out.exists(),
                    progress=config.progress,
                ),
                console=console,
            )
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        results[item.name] = {
            "suite": item.suite,
            "rates": headline(summary),
            "judge": summary.get("judge_name"),
            "unscored": summary.get("unscored", 0),
            "examples": _examples(out, config.examples),
        }
    return results
