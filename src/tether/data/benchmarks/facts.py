"""Fact sets for unlearning (TOFU-style, Maini et al. 2024): one question, its answer and four options per row.

A row: ``id``, ``entity``, ``split`` (``forget``, ``retain`` or ``holdout``; holdout facts are never trained on,
the non-members of membership inference), ``question``, ``answer`` (a sentence), ``paraphrase`` (the question
reworded), ``choices`` (short options) and ``label`` (the index of the right one, whose text must appear in
``answer``: it is what a cloze question asks for). The team's set is ``tether/data/unlearning/facts.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from tether.data.benchmarks.located import add_unique, located_rows, require_any

SPLITS = ("forget", "retain", "holdout")


def team_facts_path() -> Path:
    """The team-written set: 192 facts about 48 invented people (see its facts.md)."""
    return Path(str(files("tether.data.unlearning") / "facts.jsonl"))


def facts_path(spec: str | Path) -> Path:
    """``"team"`` for :func:`team_facts_path`, else the path given."""
    return team_facts_path() if str(spec) == "team" else Path(spec)


@dataclass(frozen=True)
class Fact:
    id: str
    entity: str
    split: str
    question: str
    answer: str
    paraphrase: str
    choices: tuple[str, ...]
    label: int
    source: str = ""

    @property
    def cloze_prefix(self) -> str:
        """The answer up to where the right option starts (case-insensitive match)."""
        return self.answer[: self.answer.lower().index(self.choices[self.label].lower())]


def read_facts(path: str | Path) -> list[Fact]:
    """Every row of a fact file (or ``"team"``), checked; a DataError names the file, line and field of the
    first bad one."""
    path = facts_path(path)
    facts: list[Fact] = []
    seen: dict[str, str] = {}
    for loc in located_rows(str(path)):
        choices = loc.texts("choices")
        if len(choices) < 2 or len(set(choices)) != len(choices):
            raise loc.error(f"expected at least 2 distinct options, got {list(choices)}", "choices")
        label = loc.index("label", len(choices))
        answer = loc.text("answer")
        if choices[label].lower() not in answer.lower():
            raise loc.error(f"the right option {choices[label]!r} does not appear in the answer", "answer")
        fact = Fact(
            id=loc.text("id"),
            entity=loc.text("entity"),
            split=loc.one_of("split", SPLITS),
            question=loc.text("question"),
            answer=answer,
            paraphrase=loc.text("paraphrase"),
            choices=choices,
            label=label,
            source=loc.source,
        )
        add_unique(facts, loc, fact, seen, "id")
    return require_any(facts, path, "facts")
