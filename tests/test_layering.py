"""Imports point one way: a package imports only packages on lower layers of the house (or itself).

A new package (guard, cai, interp) takes the lowest layer above everything it uses; an import that points
up or sideways fails here with the file, the line and the rule it breaks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "src" / "tether"

LAYERS: list[set[str]] = [
    {"errors", "paths", "stats", "jsonsafe", "__init__"},  # no tether imports at all (jsonsafe: strict JSON)
    {"atomic"},  # the one atomic write (strict JSON through jsonsafe)
    {"data", "report", "runs", "registry"},  # records and readers; HTML and plots; run folders; named registries
    {"models", "losses"},  # loading and wrapping models; pure loss functions
    {"config"},  # typed configs of every command (names the embedded default model)
    {"generation"},  # batched generation engines
    {"targets"},  # what gets evaluated or attacked: a local model, an endpoint, a script
    {"verification"},  # Chain-of-Verification: a target that wraps any target
    {"judges"},  # refusal judges and their factory
    {"reward"},  # reward-model scoring and composable RL rewards
    {"train", "evals", "redteam", "interp"},  # the kinds of work, independent of each other (interp: inspect models)
    {"cai", "unlearning"},  # constitutions, critique and revise, AI labels; unlearning evaluation (train + evals)
    {"guard"},  # runtime rails: detectors built on judges, toxicity scorers and red-team decoders
    {"loop"},  # the closed loop: sources (red-team, guard reviews, CAI, files) -> merge -> train -> measure
    {"demo"},  # the main job, built from the layers below
    {"cli_options"},  # typed configs -> Typer options
    {"cli_guard"},  # the guard's commands
    {"cli"},  # the command table
    {"__main__"},
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def top_package(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def tether_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported top-level tether package) for every import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "tether":
                found.append((node.lineno, parts[1] if len(parts) > 1 else "__init__"))
    return found


def layering_violations(files: list[Path]) -> list[str]:
    problems = []
    for path in files:
        own = top_package(path)
        if own not in LAYER_OF:
            problems.append(f"{path.relative_to(REPO)}: package {own!r} has no layer in tests/test_layering.py")
            continue
        for line, imported in tether_imports(path):
            if imported == own:
                continue
            if imported not in LAYER_OF:
                problems.append(f"{path.relative_to(REPO)}:{line}: imports {imported!r}, which has no layer")
            elif LAYER_OF[imported] >= LAYER_OF[own]:
                way = "sideways" if LAYER_OF[imported] == LAYER_OF[own] else "up"
                problems.append(
                    f"{path.relative_to(REPO)}:{line}: {own} (layer {LAYER_OF[own]}) imports {imported} "
                    f"(layer {LAYER_OF[imported]}), {way}"
                )
    return problems


def test_every_import_points_down_the_house():
    files = sorted(PACKAGE.rglob("*.py"))
    assert files
    problems = layering_violations(files)
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("models", "from tether.train.logprobs import sequence_logprobs\n", "up"),
        ("judges", "def f():\n    from tether.evals.run import run_eval\n", "up"),
        ("evals", "import tether.redteam.attacks\n", "sideways"),
        ("train", "from tether.models.loading import load_model\n", None),
    ],
)
def test_an_upward_or_sideways_import_is_caught(tmp_path, monkeypatch, package, source, expected):
    fake = tmp_path / "src" / "tether"
    (fake / package).mkdir(parents=True)
    module = fake / package / "probe.py"
    module.write_text(source)
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    problems = layering_violations([module])
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].endswith(expected), problems
