"""Open questions with reference answers (TriviaQA-style), and the team's fact set read as open questions."""

from __future__ import annotations

from pathlib import Path

from tether.data.benchmarks.facts import read_facts
from tether.data.benchmarks.located import UNCATEGORISED, LocatedRow, add_unique, located_rows, require_any
from tether.data.samples import QASample


def _references(loc: LocatedRow) -> tuple[str, ...]:
    """``answers`` (a list), ``answer`` as text, or TriviaQA's ``answer: {value, aliases}``."""
    if "answers" in loc.row:
        return loc.texts("answers")
    answer = loc.get("answer")
    if isinstance(answer, dict):
        value = loc.text("answer.value", answer.get("value"), given=True)
        aliases = loc.texts("answer.aliases", answer.get("aliases") or [], given=True)
        return tuple(dict.fromkeys((value, *aliases)))
    return (loc.text("answer"),)


def read_qa(source: str | Path, split: str = "validation") -> list[QASample]:
    """Rows with ``question`` and ``answers`` / ``answer`` (module docstring); optional ``id`` and ``category``.

    id = the row's ``id`` (TriviaQA's ``question_id`` too) or ``qa:<line>``; hub datasets read ``split``.
    """
    samples: list[QASample] = []
    seen: dict[str, str] = {}
    for loc in located_rows(str(source), split=split):
        references = _references(loc)
        if not references:
            raise loc.error("no reference answer", "answers")
        ident = loc.ident("id") or loc.ident("question_id") or f"qa:{loc.line}"
        sample = QASample(
            id=ident,
            question=loc.text("question"),
            references=references,
            category=loc.optional_text("category") or UNCATEGORISED,
            source=loc.source,
        )
        add_unique(samples, loc, sample, seen, "id")
    return require_any(samples, source, "questions")


def read_facts_qa(source: str | Path) -> list[QASample]:
    """A fact file as open questions: the reference is the right option; the category is the split."""
    return [
        QASample(id=f.id, question=f.question, references=(f.choices[f.label],), category=f.split, source=f.source)
        for f in read_facts(source)
    ]
