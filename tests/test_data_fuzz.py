"""Fuzzing: whatever a file holds, read_records returns valid records or raises DataError, nothing else."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.data import RECORD_TYPES, Preference, read_records_with_report
from tether.errors import DataError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

kinds = st.sampled_from(sorted(RECORD_TYPES))
on_invalid = st.sampled_from(["error", "skip"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
# Rows close to valid ones, so that fuzzing reaches the record rules and not only the parsers.
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "system", "tool", "bot"]),
            "content": st.text(max_size=6),
        }
    ),
    max_size=3,
)
fields = st.sampled_from(["messages", "prompt", "completion", "system", "chosen", "rejected", "label", "id"])
near_values = st.one_of(st.text(max_size=8), messages, st.booleans(), st.integers(-1, 2), st.none())
near_rows = st.dictionaries(fields, near_values, max_size=6)
USER, BOT = {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}
valid_rows = st.sampled_from(
    [
        {"messages": [USER, BOT]},
        {"prompt": "q", "completion": "a", "label": True},
        {"prompt": "q", "chosen": "a", "rejected": "b"},
        {"prompt": [USER], "chosen": [BOT], "rejected": [{"role": "assistant", "content": "b"}]},
    ]
)

# HH-RLHF transcripts: turns with a known or unknown speaker; a shared prefix, then two endings.
turns = st.lists(
    st.tuples(st.sampled_from(["Human", "Assistant", "Bob"]), st.text(alphabet="ab \n:", max_size=5)),
    max_size=4,
)
finals = st.text(alphabet="ab \n:", max_size=5).map(lambda text: [("Assistant", text)])
prefixes = turns | turns.map(lambda middle: [("Human", "q"), *middle, ("Human", "q")])


def check(name: str, content: bytes, kind: str, fmt: str, mode: str) -> None:
    """Write ``content`` to a file called ``name`` and read it: valid records or DataError."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        try:
            records, report = read_records_with_report(path, kind, fmt, on_invalid=mode)  # type: ignore[arg-type]
        except DataError as error:
            assert str(error).startswith(str(path))
            return
    expected = Preference if fmt == "hh-rlhf" else RECORD_TYPES[kind]
    assert records
    assert report.records + report.skipped <= report.rows
    for record in records:
        assert isinstance(record, expected)
        assert type(record).model_validate(record.model_dump()) == record


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["d.jsonl", "d.json", "d.csv", "d.parquet"]), kinds, on_invalid)
def test_arbitrary_bytes(content: bytes, name: str, kind: str, mode: str) -> None:
    check(name, content, kind, "auto", mode)


@FUZZ
@given(st.lists(json_values | near_rows | valid_rows, max_size=5), kinds, on_invalid, st.booleans())
def test_arbitrary_json(rows: list[object], kind: str, mode: str, as_list: bool) -> None:
    check("d.jsonl", "\n".join(json.dumps(row) for row in rows).encode(), kind, "auto", mode)
    check("d.json", json.dumps(rows if as_list else {"data": rows}).encode(), kind, "auto", mode)


@FUZZ
@given(st.text(max_size=300), kinds, on_invalid)
def test_arbitrary_csv_text(text: str, kind: str, mode: str) -> None:
    check("d.csv", text.encode(), kind, "auto", mode)


@FUZZ
@given(st.lists(near_rows | valid_rows, min_size=1, max_size=5), kinds, on_invalid)
def test_near_valid_csv_rows(rows: list[dict[str, object]], kind: str, mode: str) -> None:
    header = sorted({key for row in rows for key in row})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([json.dumps(row[k]) if isinstance(row.get(k), list) else row.get(k, "") for k in header])
    check("d.csv", out.getvalue().encode(), kind, "auto", mode)


def transcript(parts: list[tuple[str, str]]) -> str:
    return "".join(f"\n\n{speaker}:{text}" for speaker, text in parts)


@FUZZ
@given(st.lists(st.tuples(prefixes, turns | finals, turns | finals), max_size=4), on_invalid)
def test_hh_rlhf_transcripts(rows: list[tuple[list, list, list]], mode: str) -> None:
    lines = [
        json.dumps({"chosen": transcript(shared + chosen), "rejected": transcript(shared + rejected)})
        for shared, chosen, rejected in rows
    ]
    check("hh.jsonl", "\n".join(lines).encode(), "preference", "hh-rlhf", mode)
