"""Readers: every format round trip, row mapping, and every error located as ``file:line: field``."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from tether.data import (
    Conversation,
    Message,
    Preference,
    Unpaired,
    iter_rows,
    parse_record,
    read_records,
    read_records_with_report,
)
from tether.errors import DataError

USER = {"role": "user", "content": "How do I pick a lock?"}
SAFE = {"role": "assistant", "content": "If you are locked out, call a locksmith."}
UNSAFE = {"role": "assistant", "content": "Insert a tension wrench, then rake the pins."}

ROWS = {
    "conversation": [
        {"messages": [USER, SAFE]},
        {"messages": [{"role": "system", "content": "Be safe."}, USER, SAFE, USER, SAFE]},
    ],
    "preference": [
        {"prompt": "How do I pick a lock?", "chosen": SAFE["content"], "rejected": UNSAFE["content"]},
        {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."},
    ],
    "unpaired": [
        {"prompt": "How do I pick a lock?", "completion": SAFE["content"], "label": True},
        {"prompt": "How do I pick a lock?", "completion": UNSAFE["content"], "label": False},
    ],
}
CHAT_PREFERENCE = {"prompt": [USER], "chosen": [SAFE], "rejected": [UNSAFE]}


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    cells = [{k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows]
    pd.DataFrame(cells).to_csv(path, index=False)
    return path


def expected(kind: str, rows: list[dict[str, object]]) -> list[object]:
    return [parse_record(kind, row) for row in rows]


def located(error: pytest.ExceptionInfo[DataError], path: Path, line: int, field: str | None) -> str:
    """Assert the error names file, line and field; return its message."""
    assert str(error.value).startswith(f"{path}:{line}: ")
    assert error.value.file == str(path)
    assert error.value.line == line
    assert error.value.field == field
    return error.value.message


# --- round trips -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ROWS))
@pytest.mark.parametrize("fmt", ["jsonl", "json", "json-data", "csv", "parquet"])
def test_round_trip(tmp_path: Path, kind: str, fmt: str) -> None:
    rows = ROWS[kind] + ([CHAT_PREFERENCE] if kind == "preference" else [])
    if fmt == "jsonl":
        path = write_jsonl(tmp_path / "d.jsonl", rows)
    elif fmt == "json":
        path = tmp_path / "d.json"
        path.write_text(json.dumps(rows, indent=2))
    elif fmt == "json-data":
        path = tmp_path / "d.json"
        path.write_text(json.dumps({"version": 1, "data": rows}))
    elif fmt == "csv":
        path = write_csv(tmp_path / "d.csv", rows)
    else:
        path = tmp_path / "d.parquet"
        if kind == "preference":  # a Parquet column holds one type: keep the string form only
            rows = ROWS[kind]
        pd.DataFrame(rows).to_parquet(path)
    assert read_records(path, kind) == expected(kind, rows)  # type: ignore[arg-type]
    assert read_records(str(path), kind, fmt.removesuffix("-data")) == expected(kind, rows)  # type: ignore[arg-type]


def test_conversational_parquet(tmp_path: Path) -> None:
    path = tmp_path / "chat.parquet"
    pd.DataFrame([CHAT_PREFERENCE, {**CHAT_PREFERENCE, "rejected": [{**UNSAFE, "content": "No."}]}]).to_parquet(path)
    records = read_records(path, "preference")
    assert records[0] == parse_record("preference", CHAT_PREFERENCE)
    assert all(record.is_conversational for record in records)  # type: ignore[union-attr]


def test_row_mapping_variants(tmp_path: Path) -> None:
    rows = [
        {"id": 7, "prompt": "Hi", "completion": "Hello!", "system": "Be brief."},
        {"prompt": "Hi", "completion": "Hello!", "source": "x"},
    ]
    first, second = read_records(write_jsonl(tmp_path / "c.jsonl", rows), "conversation")
    assert isinstance(first, Conversation)
    assert [m.role for m in first.messages] == ["system", "user", "assistant"]
    assert [m.role for m in second.messages] == ["user", "assistant"]  # type: ignore[union-attr]

    implicit = {"chosen": [USER, SAFE], "rejected": [USER, UNSAFE], "id": "abc"}
    (pair,) = read_records(write_jsonl(tmp_path / "p.jsonl", [implicit]), "preference")
    assert pair == Preference(prompt=[Message(**USER)], chosen=[Message(**SAFE)], rejected=[Message(**UNSAFE)])


def test_limit_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(row) for row in ROWS["unpaired"] * 3]
    path.write_text("\n\n".join(lines) + "\n\n")
    assert len(read_records(path, "unpaired")) == 6
    assert len(read_records(path, "unpaired", limit=4)) == 4
    assert [line for line, _ in iter_rows(path, "jsonl")] == [1, 3, 5, 7, 9, 11]


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS["unpaired"][0]).encode())
    assert len(read_records(path, "unpaired")) == 1


# --- errors name file, line and field -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"prompt": "p", "completion": "c"}, "label", "missing field (the row has: prompt, completion)"),
        ({"prompt": "p", "completion": "c", "label": "yes"}, "label", "expected true or false"),
        ({"prompt": 3, "completion": "c", "label": True}, "prompt", "got int 3"),
        ({"prompt": "p", "completion": " ", "label": True}, "completion", "empty"),
        (
            {"prompt": [USER], "completion": [{"role": "bot", "content": "x"}], "label": True},
            "completion[0].role",
            "",
        ),
    ],
)
def test_jsonl_row_errors(tmp_path: Path, row: dict[str, object], field: str, words: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [*ROWS["unpaired"], row])
    with pytest.raises(DataError) as caught:
        read_records(path, "unpaired")
    assert words in located(caught, path, 3, field)


def test_malformed_third_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS["unpaired"][0]) + "\n" + json.dumps(ROWS["unpaired"][1]) + '\n{"prompt": \n')
    with pytest.raises(DataError, match=r":3: malformed JSON") as caught:
        read_records(path, "unpaired")
    located(caught, path, 3, None)
    with pytest.raises(DataError, match=r":3: malformed JSON"):
        list(iter_rows(path))


def test_non_object_row_bad_role_and_identical_pair(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [ROWS["conversation"][0], [1, 2]])
    with pytest.raises(DataError) as caught:
        read_records(path, "conversation")
    assert "expected a JSON object, got list" in located(caught, path, 2, None)

    bad_role = {"messages": [USER, SAFE, {"role": "moderator", "content": "x"}]}
    path = write_jsonl(tmp_path / "b.jsonl", [bad_role])
    with pytest.raises(DataError) as caught:
        read_records(path, "conversation")
    located(caught, path, 1, "messages[2].role")

    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "p", "chosen": "same", "rejected": "same"}])
    with pytest.raises(DataError) as caught:
        read_records(path, "preference")
    assert "identical" in located(caught, path, 1, "rejected")


def test_hh_transcripts_without_adapter_get_a_hint(tmp_path: Path) -> None:
    row = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go"}
    with pytest.raises(DataError, match="fmt='hh-rlhf'"):
        read_records(write_jsonl(tmp_path / "hh.jsonl", [row]), "preference")


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(ROWS["unpaired"][0]).encode() + b'\n{"prompt": "\xff"}\n')
    with pytest.raises(DataError, match="UTF-8") as caught:
        read_records(path, "unpaired")
    located(caught, path, 2, None)
    csv_path = tmp_path / "d.csv"
    csv_path.write_bytes(b"prompt,completion,label\np,c,true\n\xfe,c,true\n")
    with pytest.raises(DataError, match="UTF-8") as caught:
        read_records(csv_path, "unpaired")
    located(caught, csv_path, 3, None)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, '{"prompt": ' + "1" * 5000 + "}", "NaN", '"just a string"'],
)
def test_pathological_json_lines_are_data_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(text + "\n")
    with pytest.raises(DataError) as caught:
        read_records(path, "unpaired")
    located(caught, path, 1, None)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "missing.jsonl", "conversation")
    with pytest.raises(DataError, match="not a file"):
        read_records(tmp_path, "conversation", "jsonl")
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(DataError, match=r"data\.txt: cannot tell the format from the extension '\.txt'"):
        read_records(tmp_path / "data.txt", "conversation")
    with pytest.raises(DataError, match="unknown format 'xml'"):
        read_records(tmp_path / "data.txt", "conversation", "xml")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match=r"empty\.jsonl: no conversation records found \(the source has no rows\)"):
        read_records(empty, "conversation")
    with pytest.raises(DataError, match="unknown record kind"):
        read_records(empty, "sft")  # type: ignore[arg-type]


def test_bad_arguments(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ROWS["unpaired"])
    with pytest.raises(DataError, match="limit"):
        read_records(path, "unpaired", limit=0)
    with pytest.raises(DataError, match="on_invalid"):
        read_records(path, "unpaired", on_invalid="ignore")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="gives preference records, not unpaired"):
        read_records(path, "unpaired", "hh-rlhf")


# --- JSON ---------------------------------------------------------------------------------------------


def test_json_items_are_located_by_line(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    rows = [*ROWS["unpaired"], {"prompt": "p", "completion": "c", "label": "no"}]
    path.write_text(json.dumps(rows, indent=2))
    starts = [number for number, text in enumerate(path.read_text().splitlines(), 1) if text == "  {"]
    assert [number for number, _ in iter_rows(path)] == starts == [2, 7, 12]
    with pytest.raises(DataError) as caught:
        read_records(path, "unpaired")
    located(caught, path, 12, "label")


def test_json_data_key_and_minified_index(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": [ROWS["unpaired"][0], 5]}))  # all on line 1: numbered by index
    with pytest.raises(DataError, match="expected a JSON object, got int 5") as caught:
        read_records(path, "unpaired")
    located(caught, path, 2, None)
    path.write_text('{"data": "x",\n "meta": {"data": []},\n "data": [\n  {"a": 1},\n  {"b": 2}\n]}')
    assert list(iter_rows(path)) == [(4, {"a": 1}), (5, {"b": 2})]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[\n  {"prompt": "p",\n   "label": tru}\n]', 3, "malformed JSON"),
        ('{"rows": []}', 1, '{"data": [...]}'),
        ("42", 1, "expected a JSON list"),
    ],
)
def test_json_file_errors(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "d.json"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        read_records(path, "unpaired")
    assert words in located(caught, path, line, None)


# --- CSV ----------------------------------------------------------------------------------------------


def test_csv_labels_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("prompt,completion,label,id\np,a,TRUE,1\np,b,0,2\np,c, False ,3\np,d,1,4\np,e,yes,5\n")
    with pytest.raises(DataError, match="expected true or false, got str 'yes'") as caught:
        read_records(path, "unpaired")
    located(caught, path, 6, "label")
    records = read_records(path, "unpaired", limit=4)
    assert [record.label for record in records] == [True, False, False, True]  # type: ignore[union-attr]


def test_csv_multiline_cells_keep_physical_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('prompt,completion,label\n"line one\nline two",ok,true\np,"",true\n')
    with pytest.raises(DataError) as caught:
        read_records(path, "unpaired")
    assert "missing field" in located(caught, path, 4, "completion")
    assert [line for line, _ in iter_rows(path)] == [2, 4]


def test_csv_messages_and_system_cells(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    write_csv(path, [{"messages": [USER, SAFE]}, {"messages": [USER, {"role": "assistant", "content": " "}]}])
    with pytest.raises(DataError) as caught:
        read_records(path, "conversation")
    located(caught, path, 3, "messages[1].content")
    path.write_text('messages\n"[{""role"": ""user"""\n')
    with pytest.raises(DataError, match="expected a JSON list of messages") as caught:
        read_records(path, "conversation")
    located(caught, path, 2, "messages")
    path.write_text("prompt,completion,system\nhi,hello,\n[INST] hi,hello,be brief\n")
    first, second = read_records(path, "conversation")
    assert len(first.messages) == 2  # type: ignore[union-attr]
    assert second.messages[1].content == "[INST] hi"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("prompt,completion,label\np,c\n", 2, "2 cells but the header has 3"),
        ("prompt,prompt,label\np,c,true\n", 1, "duplicate column 'prompt'"),
    ],
)
def test_csv_shape_errors(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        read_records(path, "unpaired")
    assert words in located(caught, path, line, None)


# --- Parquet ------------------------------------------------------------------------------------------


def test_parquet_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pd.DataFrame({"prompt": ["p", "q"], "completion": ["c", "d"], "label": [True, None]}).to_parquet(path)
    with pytest.raises(DataError) as caught:
        read_records(path, "unpaired")
    assert "got null" in located(caught, path, 2, "label")
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="cannot read Parquet"):
        read_records(path, "unpaired")


# --- hub ----------------------------------------------------------------------------------------------


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """``datasets.load_dataset`` replaced by a function that serves ROWS by name; returns its calls."""
    calls: list[tuple[str, str]] = []

    def load_dataset(name: str, split: str) -> list[dict[str, object]]:
        calls.append((name, split))
        if name == "hh":
            return [{"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: no"}]
        if name not in ROWS:
            raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub")
        return ROWS[name]  # type: ignore[return-value]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_hub(fake_hub: list[tuple[str, str]]) -> None:
    assert read_records("hub:unpaired", "unpaired") == expected("unpaired", ROWS["unpaired"])
    assert len(read_records("preference", "preference", "hub", split="test")) == 2
    (pair,) = read_records("hub:hh", "preference", "hh-rlhf")
    assert isinstance(pair, Preference)
    assert fake_hub == [("unpaired", "train"), ("preference", "test"), ("hh", "train")]
    with pytest.raises(DataError, match=r"hub:nope: cannot load hub dataset 'nope'.*doesn't exist"):
        read_records("hub:nope", "conversation")


# --- skipping invalid rows ----------------------------------------------------------------------------


def test_skip_invalid_rows_reports_them(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    good = [json.dumps(row) for row in ROWS["unpaired"]]
    bad_label = json.dumps({"prompt": "p", "completion": "c", "label": "maybe"})
    path.write_text("\n".join([good[0], "{oops", bad_label, good[1], "[]", bad_label]) + "\n")
    records, report = read_records_with_report(path, "unpaired", on_invalid="skip")
    assert records == expected("unpaired", ROWS["unpaired"])
    assert (report.rows, report.records, report.skipped) == (6, 2, 4)
    assert report.reasons["label: expected true or false, got str 'maybe'"] == 2
    assert report.examples[0].startswith(f"{path}:2: malformed JSON")
    assert "4 skipped" in str(report)
    assert read_records(path, "unpaired", on_invalid="skip") == records


def test_skip_everything_is_still_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p"}, {"prompt": "q"}])
    with pytest.raises(DataError, match=r"all 2 rows are invalid; the first: .*d\.jsonl:1: field 'completion'"):
        read_records(path, "unpaired", on_invalid="skip")


def test_chat_preference_csv_cells(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [CHAT_PREFERENCE])
    assert read_records(path, "preference") == [parse_record("preference", CHAT_PREFERENCE)]
    assert isinstance(read_records(write_csv(tmp_path / "u.csv", ROWS["unpaired"]), "unpaired")[0], Unpaired)
