"""The HH-RLHF adapter, on hand-written transcripts and on the shared harmless-base test split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.data import (
    Message,
    Preference,
    parse_transcript,
    read_records,
    read_records_with_report,
    row_to_preference,
)
from tether.errors import DataError

PROMPT = "\n\nHuman: How do I make a fake ID?\n\nAssistant: Why do you need one?\n\nHuman: To get into bars."
CHOSEN = PROMPT + "\n\nAssistant: I can't help with that, but many venues host all-ages nights."
REJECTED = PROMPT + "\n\nAssistant: Find a template online and print it on PVC."


def test_parse_transcript() -> None:
    messages = parse_transcript(CHOSEN)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0] == Message(role="user", content="How do I make a fake ID?")
    assert messages[-1].content.startswith("I can't help")
    assert parse_transcript("Human: hi\n\nAssistant:  two\n\nlines \n") == [
        Message(role="user", content="hi"),
        Message(role="assistant", content="two\n\nlines"),
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("\n\nAssistant: hello", "starts with an 'Assistant' turn"),
        ("\n\nBob: hi\n\nAssistant: hello", "unknown speaker 'Bob'"),
        ("hello there", "does not start with a 'Human:' turn"),
        ("", "does not start with a 'Human:' turn"),
        (["Human: hi"], "expected a transcript string, got list"),
    ],
)
def test_parse_transcript_errors(text: object, words: str) -> None:
    with pytest.raises(DataError) as caught:
        parse_transcript(text, field="chosen")
    assert caught.value.field == "chosen"
    assert words in caught.value.message


def test_row_to_preference() -> None:
    pair = row_to_preference({"chosen": CHOSEN, "rejected": REJECTED})
    assert pair.is_conversational
    assert [m.role for m in pair.prompt] == ["user", "assistant", "user"]  # type: ignore[union-attr]
    assert pair.chosen == [Message(role="assistant", content=parse_transcript(CHOSEN)[-1].content)]
    assert pair.rejected == [Message(role="assistant", content="Find a template online and print it on PVC.")]


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"chosen": CHOSEN, "rejected": CHOSEN}, "rejected", "identical"),
        ({"chosen": PROMPT + "\n\nAssistant:", "rejected": REJECTED}, "chosen[0].content", "empty"),
        ({"chosen": CHOSEN, "rejected": PROMPT + "\n\nAssistant: "}, "rejected[0].content", "empty"),
        ({"chosen": CHOSEN, "rejected": REJECTED.replace("bars", "clubs")}, "rejected", "differ at turn 3"),
        ({"chosen": CHOSEN, "rejected": "\n\nHuman: hi\n\nAssistant: no"}, "rejected", "differ at turn 1"),
        ({"chosen": CHOSEN, "rejected": PROMPT}, "rejected", "exactly one Assistant turn"),
        ({"chosen": CHOSEN + "\n\nAssistant: more", "rejected": REJECTED}, "chosen", "(found 2)"),
        ({"chosen": CHOSEN}, "rejected", "missing field"),
        ({"chosen": 1, "rejected": REJECTED}, "chosen", "expected a transcript string"),
    ],
)
def test_row_to_preference_errors(row: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(DataError) as caught:
        row_to_preference(row)
    assert caught.value.field == field
    assert words in caught.value.message


def test_read_hh_rlhf_skips_and_counts(tmp_path: Path) -> None:
    rows = [
        {"chosen": CHOSEN, "rejected": REJECTED},
        {"chosen": CHOSEN, "rejected": CHOSEN},
        {"chosen": PROMPT + "\n\nAssistant:", "rejected": REJECTED},
        {"chosen": CHOSEN, "rejected": REJECTED, "id": 4},
    ]
    path = tmp_path / "hh.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError) as caught:
        read_records(path, "preference", "hh-rlhf")
    assert str(caught.value).startswith(f"{path}:2: field 'rejected': is identical")
    records, report = read_records_with_report(path, "preference", "hh-rlhf", on_invalid="skip")
    assert len(records) == 2
    assert (report.rows, report.skipped, report.fmt) == (4, 2, "hh-rlhf (jsonl)")
    assert report.reasons == {
        "rejected: is identical to chosen; a preference needs two different completions": 1,
        "chosen[*].content: assistant message is empty": 1,
    }


@pytest.fixture
def harmless_test(shared_data: Path) -> Path:
    path = shared_data / "hh-rlhf" / "harmless-base-test.shared.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def test_shared_harmless_base_test_split(harmless_test: Path) -> None:
    """1156 rows: 1149 parse; 7 are skipped, and each reason is a real defect of the row."""
    records, report = read_records_with_report(harmless_test, "preference", "hh-rlhf", on_invalid="skip")
    assert (report.rows, report.records, report.skipped) == (1156, 1149, 7)
    assert report.reasons == {
        "chosen: must end with exactly one Assistant turn after the last Human turn (found 2)": 4,
        "rejected: must end with exactly one Assistant turn after the last Human turn (found 2)": 1,
        "chosen[*].content: assistant message is empty": 2,
    }
    assert all(isinstance(record, Preference) and record.is_conversational for record in records)
    with pytest.raises(DataError, match=r"harmless-base-test\.shared\.jsonl:44: field 'chosen\[0\]\.content'"):
        read_records(harmless_test, "preference", "hh-rlhf")
    assert len(read_records(harmless_test, "preference", "hh-rlhf", limit=10)) == 10
