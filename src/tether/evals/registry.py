"""The eval-suite registry: a suite is a name, a kind and a loader from a data source to samples.

Adding a suite is one small module that calls :func:`register_suite` (see ``tether.evals.suites``) plus a
test. ``kind`` says how samples are run: ``prompt`` suites are answered by the target and judged by
their ``scorer`` (:mod:`tether.evals.scorers`); ``choice`` suites are scored by the log-likelihood of
each option.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tether.errors import TetherError
from tether.evals.choice_metrics import get_choice_metric
from tether.evals.scorers import get_scorer

SuiteKind = Literal["prompt", "choice", "qa"]


@dataclass(frozen=True)
class Suite:
    name: str
    kind: SuiteKind
    description: str
    load: Callable[..., list[Any]]
    default_max_new_tokens: int = 256
    scorer: str = "refusal"
    """How a prompt suite's answers are judged: a name in the scorer registry (``tether.evals.scorers``)."""
    metrics: tuple[str, ...] = ()
    """What a choice suite reports beyond accuracy: names in the choice-metric registry
    (``tether.evals.choice_metrics``)."""


SUITES: dict[str, Suite] = {}


def register_suite(name: str, kind: SuiteKind, description: str, **options: Any) -> Callable:
    """Decorator: register ``load(source, **kwargs) -> samples`` as suite ``name``."""

    def wrap(load: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
        if name in SUITES:
            raise ValueError(f"suite {name!r} is registered twice")
        suite = Suite(name, kind, description, load, **options)
        # An unknown scorer or metric fails at registration, not mid-run.
        if kind == "prompt":
            get_scorer(suite.scorer)
        for metric in suite.metrics:
            get_choice_metric(metric)
        SUITES[name] = suite
        return load

    return wrap


def get_suite(name: str) -> Suite:
    import tether.evals.suites  # noqa: F401  (registers the built-in suites)

    if name not in SUITES:
        raise TetherError(f"unknown eval suite {name!r}; choose from {', '.join(sorted(SUITES))}")
    return SUITES[name]


def list_suites() -> list[Suite]:
    import tether.evals.suites  # noqa: F401

    return [SUITES[name] for name in sorted(SUITES)]
