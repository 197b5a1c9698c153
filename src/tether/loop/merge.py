"""Merge the sources' rows into one preference dataset with provenance, de-duplicated.

Every row is checked as the :class:`~tether.data.records.Preference` record `tether dpo` reads (an invalid
one is a DataError naming its file, line and field) and written in conversational form (a text prompt becomes
one user message, a text answer one assistant message), so that the same pair from a text file and from a
red-team export is one pair. Its ``provenance`` says where it came from: the source's ``name`` and ``type``,
the ``id`` the source gave it (its own ``source`` field: ``redteam:<attempt>``, ``guard:<interaction>``,
``cai-revise:<prompt>``), and the ``file`` and ``line`` it was read from.

Two rows are the same pair when prompt, chosen and rejected are equal once whitespace is collapsed
(:func:`pair_key`). The first is kept and each later copy adds its provenance to the kept row's
``also_from``; a pair trained in an earlier iteration is dropped (``trained_before``); two pairs that rank
the same two answers to one prompt in opposite orders in one iteration are both dropped (``contradicting``,
each copy counted once): one of the sources is wrong and the loop cannot tell which. A pair that reverses one
trained in an earlier iteration is kept: a later signal (a reviewer's correction) may mend an earlier one.
A row whose chosen and rejected differ only in whitespace is a DataError.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.data.records import Preference, as_messages, parse_record
from tether.errors import DataError

FIELDS = ("prompt", "chosen", "rejected", "margin", "p_chosen")


def _messages(value: Any) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in value]


def conversational(record: Preference) -> dict[str, Any]:
    """The record's fields in conversational form (plus ``margin`` / ``p_chosen`` when set)."""
    row: dict[str, Any] = {
        "prompt": _messages(as_messages(record.prompt, "user")),
        "chosen": _messages(as_messages(record.chosen, "assistant")),
        "rejected": _messages(as_messages(record.rejected, "assistant")),
    }
    if record.margin is not None:
        row["margin"] = record.margin
    if record.p_chosen is not None:
        row["p_chosen"] = record.p_chosen
    return row


def _canonical(messages: list[dict[str, str]]) -> list[list[str]]:
    return [[m["role"], re.sub(r"\s+", " ", m["content"]).strip()] for m in messages]


def pair_key(row: Mapping[str, Any], *, swapped: bool = False) -> str:
    """sha256 of (prompt, chosen, rejected) with whitespace collapsed; ``swapped`` exchanges chosen and rejected."""
    first, second = ("rejected", "chosen") if swapped else ("chosen", "rejected")
    text = json.dumps([_canonical(row["prompt"]), _canonical(row[first]), _canonical(row[second])])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Merged:
    rows: list[dict[str, Any]]
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    """Per source: ``read``, ``kept``, ``duplicate`` (of a row kept earlier), ``trained_before``,
    ``contradicting``."""


def merge(
    sources: Iterable[tuple[str, str, Iterable[tuple[str, int, Mapping[str, Any]]]]],
    *,
    trained: Collection[str] = frozenset(),
) -> Merged:
    """Merge ``(name, type, rows)`` per source, in order; ``trained`` holds the :func:`pair_key` of every pair
    an earlier iteration trained on."""
    kept: dict[str, dict[str, Any]] = {}
    counts: dict[str, Counter[str]] = {}
    for name, kind, rows in sources:
        tally = counts.setdefault(name, Counter())
        for file, line, raw in rows:
            tally["read"] += 1
            try:
                record = parse_record("preference", {k: raw[k] for k in FIELDS if k in raw})
            except DataError as err:
                raise DataError(err.message, file=file, line=line, field=err.field) from None
            assert isinstance(record, Preference)
            row = conversational(record)
            where = {"source": name, "type": kind, "id": raw.get("source"), "file": file, "line": line}
            key = pair_key(row)
            if key == pair_key(row, swapped=True):
                raise DataError("differs from chosen only in whitespace", file=file, line=line, field="rejected")
            if key in trained:
                tally["trained_before"] += 1
            elif key in kept:
                kept[key]["also_from"].append(where)
                tally["duplicate"] += 1
            else:
                kept[key] = {**row, "provenance": where, "also_from": []}
    for key in [k for k in kept if pair_key(kept[k], swapped=True) in kept]:
        row = kept.pop(key)
        for where in (row["provenance"], *row["also_from"]):
            counts[where["source"]]["contradicting"] += 1
        for where in row["also_from"]:  # each copy counted once: contradicting, not also duplicate
            counts[where["source"]]["duplicate"] -= 1
    for row in kept.values():
        counts[row["provenance"]["source"]]["kept"] += 1
    return Merged(list(kept.values()), counts)
