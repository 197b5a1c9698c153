"""``tether redteam``: load requests and attacks (validated before any model loads), run, summarise, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tether.atomic import atomic_write_json
from tether.config import RedteamConfig
from tether.data.benchmarks import read_harmful_prompts
from tether.errors import ConfigError, TetherError
from tether.generation import SamplingParams
from tether.judges.factory import make_harm_judge, make_judge
from tether.redteam.campaign import export_pairs, run_campaign, summarize_campaign
from tether.redteam.registry import AttackResources, attack_requirements, make_attack
from tether.report.html import page, paragraph, section, table, write_html
from tether.report.plots import grouped_bars
from tether.runs.folders import check_output_file, check_run_folder, open_run_folder
from tether.runs.store import SampleStore, check_unscored
from tether.targets import LocalTarget, OpenAITarget, make_target
from tether.verification import verified_if


def _helper_model(config: RedteamConfig, role: str) -> Any:
    """The attacker or translator target: ``--{role}-endpoint`` or ``--{role}-model``, else None."""
    endpoint, name, model = (getattr(config, f"{role}_{k}") for k in ("endpoint", "endpoint_model", "model"))
    if endpoint:
        if not name:
            raise ConfigError(f"--{role}-endpoint needs --{role}-endpoint-model")
        return OpenAITarget(
            endpoint, name, concurrency=config.concurrency, timeout=config.request_timeout, retries=config.retries
        )
    if model:
        return LocalTarget(model, backend=config.generation_backend)
    return None


def write_campaign_report(path: Path, title: str, summary: dict[str, Any], records: list[dict[str, Any]]) -> Path:
    def cell(attack: str, category: str) -> str:
        block = summary["by_attack_category"].get(f"{attack}|{category}")
        return "" if block is None or block["attack_success"]["n"] == 0 else f"{block['attack_success']['value']:.0%}"

    def ci(e: dict[str, float]) -> str:
        return "n/a" if e["n"] == 0 else f"{e['value']:.1%} [{e['low']:.1%}, {e['high']:.1%}]"

    attacks = list(summary["by_attack"])
    categories = list(summary["by_category"])
    parts = [
        section(
            "Attack success by attack (95% bootstrap intervals)",
            table(
                ["attack", "success [95% CI]", "attempts", "unscored", "queries"],
                [
                    [a, ci(v["attack_success"]), v["n"], v["unscored"], v["queries"]]
                    for a, v in summary["by_attack"].items()
                ],
            ),
            paragraph(f"Prompts broken by at least one attack: {ci(summary['any_attack_success'])}."),
            grouped_bars(
                attacks,
                {"attack success": [v["attack_success"]["value"] for v in summary["by_attack"].values()]},
                "attack success by attack",
                "%",
                percent=True,
            ),
        ),
        section(
            "Attack success by category",
            table(
                ["category", "success [95% CI]", "attempts"],
                [[c, ci(v["attack_success"]), v["n"]] for c, v in summary["by_category"].items()],
            ),
            table(
                ["attack", *categories],
                [[a, *(cell(a, c) for c in categories)] for a in attacks],
            ),
        ),
        section(
            "Successful attempts (first 100; all attempts are in samples.jsonl)",
            table(
                ["attack", "category", "request", "sent (last turn)", "answer", "verdict"],
                [
                    [
                        r["attack"],
                        r["category"],
                        r["request"][:160],
                        r["chat"][-1]["content"][:240],
                        r["judged_response"][:300],
                        r["verdict"]["reason"][:100],
                    ]
                    for r in records
                    if r["success"]
                ][:100],
            ),
        ),
    ]
    return write_html(path, page(title, parts))


def run_redteam(config: RedteamConfig, *, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    samples = read_harmful_prompts(config.data)
    if config.limit:
        samples = samples[: config.limit]
    names = [a.strip() for a in config.attacks.split(",") if a.strip()]
    if not names:
        raise ConfigError("--attacks names no attack", field="attacks")
    if len(set(names)) != len(names):
        raise ConfigError(f"--attacks lists an attack twice: {config.attacks}", field="attacks")
    check_run_folder(config.out, "redteam", resume=config.resume, overwrite=config.overwrite)
    if config.export_pairs is not None:
        check_output_file(config.export_pairs, "--export-pairs")
    template_dir = config.templates_dir
    needed = {r for n in names for r in attack_requirements(n, AttackResources(template_dir=template_dir))}
    resources = AttackResources(
        attacker=_helper_model(config, "attacker") if "attacker" in needed else None,
        pair_iterations=config.pair_iterations,
        translator=_helper_model(config, "translator") if "translator" in needed else None,
        translate_to=config.translate_to,
        template_dir=template_dir,
    )
    attacks = [make_attack(n, resources) for n in names]
    target_name = f"endpoint {config.endpoint_model}@{config.endpoint}" if config.endpoint else config.model
    identity = {
        "command": "redteam",
        "data": config.data,
        "target": target_name,
        "judge": config.judge,
        "harm_judge": config.harm_judge,
        "success": config.success,
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "seed": config.seed,
        "limit": config.limit,
    }
    judge = make_judge(config)
    harm_judge = make_harm_judge(config)
    target = make_target(config, model=config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code)
    target = verified_if(target, config.chain_of_verification)
    extra = (config.export_pairs,) if config.export_pairs is not None else ()
    open_run_folder(config.out, "redteam", resume=config.resume, overwrite=config.overwrite, extra=extra)
    store = SampleStore(config.out, identity, resume=config.resume, overwrite=config.overwrite)
    params = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature, seed=config.seed)
    total = len(samples) * len(attacks)
    console.print(
        f"[bold]redteam[/]: {len(samples)} requests x {len(attacks)} attacks against {target_name}, judge {judge.name}"
        + (f", harm judge {harm_judge.name} (decides success)" if harm_judge else "")
    )
    from tether.report.progress import steps

    with steps(console, "attack", total - sum(map(store.done, store.records)), enabled=config.progress) as bar:
        records = run_campaign(
            samples,
            attacks,
            target=target,
            judge=judge,
            params=params,
            store=store,
            success=config.success,
            batch_size=config.batch_size,
            on_batch=bar.advance,
            harm_judge=harm_judge,
        )
    decided_by = f"harm: {config.harm_judge}" if config.harm_judge else f"refusal: {config.judge} ({config.success})"
    summary = summarize_campaign(records, judge=decided_by)
    summary["identity"] = identity
    atomic_write_json(config.out / "summary.json", summary)
    write_campaign_report(config.out / "report.html", f"tether redteam: {target_name}", summary, records)
    table_ = Table(title=f"attack success (95% bootstrap interval), judged by {decided_by}")
    for column in ("attack", "success", "95% CI", "attempts", "unscored"):
        table_.add_column(column, justify="left" if column == "attack" else "right")
    for name, block in summary["by_attack"].items():
        e = block["attack_success"]
        rate_, interval = ("n/a", "") if e["n"] == 0 else (f"{e['value']:.0%}", f"[{e['low']:.0%}, {e['high']:.0%}]")
        table_.add_row(name, rate_, interval, str(block["n"]), str(block["unscored"]))
    console.print(table_)
    if config.export_pairs is not None:
        n = export_pairs(records, config.export_pairs)
        console.print(f"exported {n} successful attacks as preference pairs -> {config.export_pairs}")
    console.print(
        f"attempts: {store.path}  summary: {config.out / 'summary.json'}  report: {config.out / 'report.html'}"
    )
    if not records:
        raise TetherError("the campaign produced no attempts")
    check_unscored(records, config.max_unscored, what="attempts", deciding_only=True)
    return summary
