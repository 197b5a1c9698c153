"""``tether guard ...``: the guard's commands that a typed config does not drive (detectors, keys, export,
calibrate, unmask), and the functions the config-driven ones (train, check, eval, serve) run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tether.config import load_config
from tether.errors import UsageError
from tether.guard.config import GuardCheckConfig, GuardConfig, GuardEvalConfig, GuardServeConfig, GuardTrainConfig

guard_app = typer.Typer(help="Runtime rails: detectors, batch checks, evaluation, training.", no_args_is_help=True)
console = Console()


def guard_train(config: GuardTrainConfig) -> None:
    from tether.guard.train import train_guard

    report = train_guard(config, console=console)
    for name in ("harmful_request", "jailbreak_similarity", "jailbreak_classifier"):
        if name in report:
            r = report[name]
            console.print(
                f"{name}: threshold {r['threshold']:.3f}; on {r['positives']} held-out positives and "
                f"{r['negatives']} held-out negatives: recall {r['recall']:.1%} at FPR {r['fpr']:.1%}, "
                f"AUROC {r['auroc']:.3f}"
            )
    console.print(f"[green]done[/]: artifacts, train_report.json and guard.yaml in {config.out}")


def guard_check(config: GuardCheckConfig) -> None:
    from tether.guard.check import run_check

    console.print(f"[green]done[/]: verdicts in {run_check(config, console=console)}")


def guard_eval(config: GuardEvalConfig) -> None:
    from tether.guard.check import run_eval

    result = run_eval(config, console=console)
    for name, entry in result["rails"].items():
        at = ", ".join(f"recall {a['recall']:.1%} @ {a['fpr']:.0%} FPR" for a in entry["at_fpr"])
        console.print(f"{name}: {at}" + (f", AUROC {entry['auroc']:.3f}" if "auroc" in entry else ""))
    p = result["pipeline"]
    console.print(
        f"configured pipeline: blocks {p['recall']['value']:.1%} of positives, {p['fpr']['value']:.1%} of negatives"
    )
    console.print(f"[green]done[/]: {config.out / 'report.html'}")


def guard_serve(config: GuardServeConfig) -> None:
    from tether.guard.server import serve

    serve(config, console=console)


@guard_app.command("detectors")
def guard_detectors_command(
    options: Annotated[str | None, typer.Option("--options", help="Show the options of this detector.")] = None,
) -> None:
    """List the detectors a guard rail can use (and one detector's options)."""
    from rich.table import Table

    from tether.guard.detectors import DETECTORS

    if options is not None:
        cls = DETECTORS.get(options)
        table = Table(title=f"{options} options")
        for column in ("option", "default", "about"):
            table.add_column(column)
        for name, field in cls.Options.model_fields.items():
            default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
            table.add_row(field.alias or name, default, " ".join((field.description or "").split()))
        console.print(table)
        return
    table = Table(title="Guard detectors")
    for column in ("name", "sides", "masks", "about"):
        table.add_column(column)
    for name in DETECTORS.names():
        cls = DETECTORS.get(name)
        table.add_row(name, ", ".join(cls.sides), "yes" if cls.finds_spans else "", cls.summary)
    console.print(table)


keys_app = typer.Typer(
    help="API keys of a guard server (stored hashed; a new key is shown once).", no_args_is_help=True
)
guard_app.add_typer(keys_app, name="keys")
GuardFile = Annotated[Path | None, typer.Option("--config", help="The guard YAML (its database is used).")]
Database = Annotated[str | None, typer.Option(help="Database URL (default: the guard file's, else its default).")]


def _guard_store(config: Path | None, database: str | None) -> Any:
    from tether.guard.store import open_store

    parsed = load_config(GuardConfig, config, {"database": database})
    return open_store(parsed.database)


@keys_app.command("create")
def guard_keys_create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    admin: Annotated[bool, typer.Option(help="May read logs, review and manage keys.")] = False,
    config: GuardFile = None,
    database: Database = None,
) -> None:
    """Create an API key and print it (only its hash is stored: copy it now)."""
    key, record = _guard_store(config, database).create_key(name, admin=admin)
    console.print(f"{'admin ' if admin else ''}key {record.id} ({name}):", highlight=False)
    print(key)


@keys_app.command("list")
def guard_keys_list(config: GuardFile = None, database: Database = None) -> None:
    """List the keys (prefix, name, admin, revoked)."""
    from rich.table import Table

    table = Table(title="API keys")
    for column in ("id", "prefix", "name", "admin", "revoked"):
        table.add_column(column)
    for k in _guard_store(config, database).list_keys():
        table.add_row(k.id, k.prefix + "...", k.name, "yes" if k.admin else "", "yes" if k.revoked_at else "")
    console.print(table)


@keys_app.command("revoke")
def guard_keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id or prefix.")],
    config: GuardFile = None,
    database: Database = None,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    if not _guard_store(config, database).revoke_key(key):
        raise UsageError(f"no active key {key!r}")
    console.print(f"revoked {key}")


@guard_app.command("export")
def guard_export_command(
    out: Annotated[Path, typer.Option(help="Folder for preferences.jsonl, sft.jsonl and unpaired.jsonl.")],
    config: GuardFile = None,
    database: Database = None,
) -> None:
    """Write reviewed interactions as the records tether dpo, sft and kto train on."""
    from tether.guard.feedback import export_reviews

    counts = export_reviews(_guard_store(config, database).reviewed(), out)
    console.print(
        f"[green]done[/]: {counts['preferences']} preference pairs, {counts['sft']} SFT examples, "
        f"{counts['unpaired']} unpaired examples from {sum(counts['reviews'].values())} reviews -> {out}"
    )


@guard_app.command("calibrate")
def guard_calibrate_command(
    config: Annotated[Path, typer.Option("--config", help="The guard YAML whose input rails to recalibrate.")],
    output: Annotated[Path, typer.Option(help="Where to write the recalibrated guard YAML.")],
    fpr: Annotated[float, typer.Option(min=0.0, max=0.5, help="Largest share of reviewed negatives to flag.")] = 0.01,
    min_reviews: Annotated[int, typer.Option(min=1, help="Fewest reviewed negatives to move a rail.")] = 5,
    database: Database = None,
) -> None:
    """Move input-rail thresholds to the reviewed false positives and negatives (a new guard file)."""
    import yaml

    from tether.atomic import atomic_write_text
    from tether.guard.feedback import calibrate

    parsed = load_config(GuardConfig, config, {"database": database})
    store = _guard_store(config, database)
    new, report = calibrate(parsed, store.reviewed(), fpr=fpr, min_reviews=min_reviews)
    if output.resolve() == config.resolve():
        raise UsageError("--output must be a new file, so the current guard file stays as it is")
    body = {"command": GuardConfig.command, **new.model_dump(mode="json", exclude_defaults=True)}
    atomic_write_text(output, yaml.safe_dump(body, sort_keys=False))
    for rail, info in report.items():
        if "kept" in info:
            console.print(f"{rail}: kept ({info['kept']})")
        else:
            console.print(
                f"{rail}: threshold -> {info['new_threshold']:.3f}; reviewed recall {info['recall_before']} -> "
                f"{info['recall_after']}, reviewed FPR {info['fpr_before']:.1%} -> {info['fpr_after']:.1%}",
                highlight=False,
            )
    console.print(f"[green]done[/]: {output}")


@guard_app.command("unmask")
def guard_unmask_command(
    text: Annotated[str, typer.Argument(help="Text with <ENTITY:ciphertext> markers (from a mask_key_env guard).")],
    key_env: Annotated[
        str, typer.Option(help="Environment variable holding the masking key.")
    ] = "TETHER_GUARD_MASK_KEY",
) -> None:
    """Decrypt the spans a guard masked with a key."""
    from tether.guard.masking import unmask

    key = os.environ.get(key_env)
    if not key:
        raise UsageError(f"--key-env: the environment variable {key_env} is not set")
    console.print(unmask(text, key), highlight=False, markup=False)
