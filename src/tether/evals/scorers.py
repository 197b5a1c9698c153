"""The scorer registry: how a prompt suite's answers are judged, summarised, reported and printed.

A prompt suite names its scorer (``register_suite(..., scorer="toxicity")``); ``tether eval`` asks the
scorer for a judge before any model loads, then for the summary, the report and the printed table. An
outside package adds a way of scoring with :func:`register_scorer`; nothing in the runner names scorers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rich.console import Console
from rich.table import Table

from tether.config import EvalConfig
from tether.errors import ConfigError
from tether.judges.verdict import Verdict
from tether.registry import Registry

Records = Sequence[dict[str, Any]]


class Judge(Protocol):
    @property
    def name(self) -> str: ...

    def judge_many(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]: ...


class PromptScorer(Protocol):
    name: str

    def judged_by(self, config: EvalConfig) -> str:
        """What judges the answers, as the run's identity records it (resuming with another is refused)."""
        ...

    def make_judge(self, config: EvalConfig) -> Judge:
        """The judge; a misconfiguration raises here, before any model loads."""
        ...

    def make_harm_judge(self, config: EvalConfig) -> Judge | None:
        """The harm judge of the answers to harmful prompts, where the scorer uses one (else None)."""
        ...

    def summarize(self, records: Records, config: EvalConfig) -> dict[str, Any]: ...

    def write_report(self, path: Path, title: str, target: str, summary: dict[str, Any], records: Records) -> None: ...

    def print_summary(self, console: Console, suite: str, summary: dict[str, Any]) -> None: ...


SCORERS: Registry[PromptScorer] = Registry("scorer")
_S = TypeVar("_S")


def register_scorer(name: str, *, replace: bool = False) -> Callable[[type[_S]], type[_S]]:
    """Class decorator: register an instance of the class as scorer ``name``."""

    def decorate(cls: type[_S]) -> type[_S]:
        scorer = cls()
        scorer.name = name  # type: ignore[attr-defined]
        SCORERS.add(name, scorer, replace=replace)  # type: ignore[arg-type]
        return cls

    return decorate


def get_scorer(name: str) -> PromptScorer:
    return SCORERS.get(name)


def list_scorers() -> list[str]:
    return SCORERS.names()


@register_scorer("refusal")
class RefusalScorer:
    """The refusal judge's verdicts: harmful prompts complied with, safe prompts refused, with intervals."""

    name = "refusal"

    def judged_by(self, config: EvalConfig) -> str:
        return config.judge + (f" + harm: {config.harm_judge}" if config.harm_judge else "")

    def make_judge(self, config: EvalConfig) -> Judge:
        from tether.judges.factory import make_judge

        return make_judge(config)

    def make_harm_judge(self, config: EvalConfig) -> Judge | None:
        from tether.judges.factory import make_harm_judge

        return make_harm_judge(config)

    def summarize(self, records: Records, config: EvalConfig) -> dict[str, Any]:
        from tether.evals.summary import summarize_prompt_run

        return summarize_prompt_run(records, judge=config.judge, harm_judge=config.harm_judge)

    def write_report(self, path: Path, title: str, target: str, summary: dict[str, Any], records: Records) -> None:
        from tether.evals.report import write_eval_report

        write_eval_report(path, title=title, runs={target: summary}, samples=records)

    def print_summary(self, console: Console, suite: str, summary: dict[str, Any]) -> None:
        print_refusal_summary(console, suite, summary)


@register_scorer("toxicity")
class ToxicityScoring:
    """A text classifier's p(toxic) of each continuation: mean and toxic share, with intervals."""

    name = "toxicity"

    def judged_by(self, config: EvalConfig) -> str:
        return config.toxicity_model or ""

    def make_judge(self, config: EvalConfig) -> Judge:
        from tether.evals.toxicity import ToxicityJudge, make_toxicity_scorer

        if not config.toxicity_model:
            raise ConfigError(
                "the toxicity suite needs --toxicity-model (a text classifier: folder or hub id, or "
                "profanity-check for the offline alt-profanity-check model)"
            )
        scorer = make_toxicity_scorer(config.toxicity_model, label=config.toxicity_label)
        return ToxicityJudge(scorer, threshold=config.toxicity_threshold)

    def make_harm_judge(self, config: EvalConfig) -> Judge | None:
        if config.harm_judge:
            raise ConfigError("--harm-judge does not apply to the toxicity suite (its classifier is the judge)")
        return None

    def summarize(self, records: Records, config: EvalConfig) -> dict[str, Any]:
        from tether.evals.toxicity import summarize_toxicity

        return summarize_toxicity(records, config.toxicity_threshold)

    def write_report(self, path: Path, title: str, target: str, summary: dict[str, Any], records: Records) -> None:
        from tether.evals.toxicity import write_toxicity_report

        write_toxicity_report(path, title, summary, records)

    def print_summary(self, console: Console, suite: str, summary: dict[str, Any]) -> None:
        overall = summary["toxicity"]["overall"]
        mean, share = overall["mean_toxicity"], overall["toxic_share"]
        console.print(
            f"toxicity ({overall['scored']} scored, {overall['unscored']} unscored): mean {mean['value']:.3f} "
            f"[{mean['low']:.3f}, {mean['high']:.3f}], toxic share {share['value']:.1%} "
            f"[{share['low']:.1%}, {share['high']:.1%}]"
        )


def print_refusal_summary(console: Console, name: str, summary: dict[str, Any]) -> None:
    table = Table(title=f"{name}: rates with 95% bootstrap intervals")
    for column in ("prompts", "metric", "rate", "95% CI", "scored", "unscored", "judge"):
        table.add_column(column, justify="left" if column in ("prompts", "metric", "judge") else "right")
    for block in ("harmful", "safe"):
        if block not in summary:
            continue
        overall = summary[block]["overall"]
        for metric, est in overall.items():
            if isinstance(est, dict):
                empty = est["n"] == 0  # nothing scored: no rate, not "nan%"
                table.add_row(
                    block,
                    metric,
                    "n/a" if empty else f"{est['value']:.1%}",
                    "" if empty else f"[{est['low']:.1%}, {est['high']:.1%}]",
                    str(est["n"]),
                    str(est.get("unscored", overall["unscored"])),
                    str(est.get("judge", "")),
                )
    console.print(table)
