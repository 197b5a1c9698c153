"""Reward sources for online RL, composable from the command line.

A spec is ``[TAG=][WEIGHT*]KIND:ARG``; several specs add up::

    --reward rm:runs/rm                           a trained reward model (tether rm train)
    --reward harmful=judge:refuse                 refusal judge on prompts tagged harmful: +1 refuses,
                                                  0 partial, -1 complies
    --reward benign=judge:comply                  the opposite, for safe prompts (penalises over-refusal)
    --reward 0.1*py:my_rewards.py:brevity         any Python callable (module path or file path)
    --reward facts:team                           factuality against reference answers: +1 right, 0 an
                                                  abstention ("I am not sure"), -1 wrong

``facts:FILE`` reads a fact file (`tether unlearn-eval`'s format; ``team`` for the team's invented facts) or
an open-QA file (question + answers); a prompt is looked up by its last user turn (normalised), and one the
file does not hold cannot be scored. Right and abstaining follow :mod:`tether.data.answers`, so a model
gains by saying it does not know rather than inventing (the reward of R-Tuning's honesty, for RL).

A prompt's reward is the weighted sum of the components whose tag is its own tag or none. A component may
return None (it could not score, e.g. the judge's "unscored"); the sample is then left out of the update
and counted, never scored as 0. A Python callable receives ``(prompts, responses)`` (lists of strings: the
last user turn and the answer) and returns a list of floats or Nones.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.data.prompts import RLPrompt
from tether.errors import ConfigError, TetherError

Scores = list[float | None]
_SPEC = re.compile(
    r"^(?:(?P<tag>[\w-]+)=)?(?:(?P<weight>[-+]?[0-9.]+(?:e-?\d+)?)\*)?(?P<kind>rm|judge|py|facts):(?P<arg>.+)$"
)
FACT_REWARDS = {"right": 1.0, "abstain": 0.0, "wrong": -1.0}
JUDGE_REWARDS = {
    "refuse": {"refuses": 1.0, "partial": 0.0, "complies": -1.0},
    "comply": {"refuses": -1.0, "partial": 0.0, "complies": 1.0},
}


@dataclass
class RewardComponent:
    spec: str
    tag: str | None
    weight: float
    score: Callable[[list[RLPrompt], list[str]], Scores]


def parse_reward_spec(spec: str) -> tuple[str | None, float, str, str]:
    """``"harmful=0.5*judge:refuse"`` -> ``("harmful", 0.5, "judge", "refuse")``; TetherError when malformed."""
    match = _SPEC.match(spec.strip())
    if match is None:
        raise ConfigError(
            f"--reward {spec!r}: expected [TAG=][WEIGHT*]KIND:ARG with KIND rm, judge, py or facts "
            "(e.g. rm:runs/rm, harmful=judge:refuse, 0.1*py:rewards.py:brevity, facts:team)",
            field="reward",
        )
    if match["kind"] == "judge" and match["arg"] not in JUDGE_REWARDS:
        raise ConfigError(
            f"--reward {spec!r}: judge rewards are judge:{' or judge:'.join(JUDGE_REWARDS)}", field="reward"
        )
    if match["kind"] == "py" and ":" not in match["arg"]:
        raise ConfigError(f"--reward {spec!r}: name the callable as py:MODULE_OR_FILE:FUNCTION", field="reward")
    return match["tag"], float(match["weight"] or 1.0), match["kind"], match["arg"]


def check_reward_specs(specs: Sequence[str], prompts: Sequence[RLPrompt]) -> None:
    """Every prompt must have at least one component; called before any model loads."""
    if not specs:
        raise ConfigError("give at least one --reward (e.g. --reward rm:runs/rm)", field="reward")
    parsed = [parse_reward_spec(s) for s in specs]
    for spec, (tag, _, kind, arg) in zip(specs, parsed, strict=True):
        if kind == "facts":  # the file is read now (errors name it), and must hold some of the prompts
            from tether.data.answers import normalize_answer

            known = read_reference_answers(arg)
            mine = [p for p in prompts if tag is None or p.tag == tag]
            if mine and not any(normalize_answer(p.text) in known for p in mine):
                raise ConfigError(
                    f"--reward {spec!r}: none of its {len(mine)} prompts is a question of {arg}", field="reward"
                )
    tags = {tag for tag, *_ in parsed}
    if None in tags:
        return
    uncovered = sorted({p.tag or "(untagged)" for p in prompts if p.tag not in tags})
    if uncovered:
        raise ConfigError(
            f"no --reward applies to prompts tagged {', '.join(uncovered)}; add an untagged one", field="reward"
        )


def load_callable(arg: str) -> Callable[..., Any]:
    target, _, name = arg.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise TetherError(f"--reward py:{arg}: {path} does not exist")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise TetherError(f"--reward py:{arg}: {path} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise TetherError(f"--reward py:{arg}: cannot import {target}: {err}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise TetherError(f"--reward py:{arg}: {target} has no callable {name!r}")
    return function


def _reward_model(arg: str, options: dict[str, Any]):
    from tether.reward.scoring import RewardModelScorer

    scorer = RewardModelScorer.load(arg, **options)
    return lambda prompts, responses: scorer.score(
        [p.prompt if isinstance(p.prompt, str) else list(p.prompt) for p in prompts], responses
    )


def _judge(arg: str, options: dict[str, Any]):
    from tether.judges.refusal import RefusalJudge

    judge = options.get("judge") or RefusalJudge()
    table = JUDGE_REWARDS[arg]

    def score(prompts: list[RLPrompt], responses: list[str]) -> Scores:
        verdicts = judge.judge_many([(p.text, r) for p, r in zip(prompts, responses, strict=True)])
        return [table.get(v.label) for v in verdicts]

    return score


def _python(arg: str, options: dict[str, Any]):
    function = load_callable(arg)

    def score(prompts: list[RLPrompt], responses: list[str]) -> Scores:
        values = list(function([p.text for p in prompts], list(responses)))
        if len(values) != len(responses):
            raise TetherError(f"reward py:{arg} returned {len(values)} values for {len(responses)} responses")
        return [None if v is None else float(v) for v in values]

    return score


def read_reference_answers(arg: str) -> dict[str, tuple[str, ...]]:
    """Normalised question -> reference answers, from a fact file (or ``team``) or an open-QA file."""
    from tether.data.answers import normalize_answer
    from tether.data.benchmarks import read_facts_qa, read_qa
    from tether.data.benchmarks.facts import facts_path
    from tether.data.benchmarks.located import located_rows

    path = facts_path(arg)
    first = next(iter(located_rows(str(path))), None)
    is_facts = first is not None and "choices" in first.row and "label" in first.row
    questions = read_facts_qa(path) if is_facts else read_qa(path)
    return {normalize_answer(q.question): q.references for q in questions}


def _facts(arg: str, options: dict[str, Any]):
    from tether.data.answers import abstains, answer_matches, normalize_answer

    references = read_reference_answers(arg)

    def score(prompts: list[RLPrompt], responses: list[str]) -> Scores:
        out: Scores = []
        for prompt, response in zip(prompts, responses, strict=True):
            refs = references.get(normalize_answer(prompt.text))
            if refs is None:
                out.append(None)
            elif abstains(response):
                out.append(FACT_REWARDS["abstain"])
            else:
                out.append(FACT_REWARDS["right" if answer_matches(response, refs) else "wrong"])
        return out

    return score


_BUILDERS = {"rm": _reward_model, "judge": _judge, "py": _python, "facts": _facts}


def build_components(specs: Sequence[str], **options: Any) -> list[RewardComponent]:
    """Load each component once (``options``: ``dtype`` and ``device`` for reward models, ``judge`` to inject one)."""
    components = []
    for spec in specs:
        tag, weight, kind, arg = parse_reward_spec(spec)
        kind_options = {k: v for k, v in options.items() if (k == "judge") == (kind == "judge")}
        components.append(RewardComponent(spec, tag, weight, _BUILDERS[kind](arg, kind_options)))
    return components


class CompositeReward:
    """``__call__(prompts, responses) -> (totals, per-component scores)``; a total is None when any of the
    prompt's components could not score."""

    def __init__(self, components: Sequence[RewardComponent]) -> None:
        self.components = list(components)

    def __call__(self, prompts: Sequence[RLPrompt], responses: Sequence[str]) -> tuple[Scores, dict[str, Scores]]:
        totals: Scores = [0.0] * len(prompts)
        parts: dict[str, Scores] = {}
        for component in self.components:
            rows = [i for i, p in enumerate(prompts) if component.tag is None or p.tag == component.tag]
            scores: Scores = [None] * len(prompts)
            if rows:
                values = component.score([prompts[i] for i in rows], [responses[i] for i in rows])
                for i, value in zip(rows, values, strict=True):
                    scores[i] = value
                    total = totals[i]
                    totals[i] = None if value is None or total is None else total + component.weight * value
            parts[component.spec] = scores
        return totals, parts
