"""Rules of the typed records: each rule, each error, and the field it names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tether.data import (
    RECORD_TYPES,
    Conversation,
    Message,
    Preference,
    Unpaired,
    parse_record,
    record_class,
)
from tether.errors import DataError


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def bot(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def error_of(kind: str, data: object) -> DataError:
    with pytest.raises(DataError) as caught:
        parse_record(kind, data, file="data.jsonl", line=7)
    assert str(caught.value).startswith("data.jsonl:7: ")
    return caught.value


# --- Message and Conversation -------------------------------------------------------------------------


def test_conversation_valid() -> None:
    record = parse_record("conversation", {"messages": [user("hi"), bot("hello")]})
    assert isinstance(record, Conversation)
    assert record.messages == [Message(role="user", content="hi"), Message(role="assistant", content="hello")]
    assert record.kind == "conversation"


@pytest.mark.parametrize(
    ("messages", "field", "words"),
    [
        ([], "messages", "no messages"),
        ([user("hi"), {"role": "system", "content": "x"}], "messages", "no assistant message"),
        ([user("hi"), bot("a"), user("b"), bot("  \n")], "messages[3].content", "empty"),
        ([user("hi"), bot("a"), {"role": "bot", "content": "x"}], "messages[2].role", "got str 'bot'"),
        (
            [user("hi"), {"role": "assistant", "content": 5}],
            "messages[1].content",
            "expected a string, got int 5",
        ),
        ([user("hi"), "hello"], "messages[1]", "expected an object"),
        ([user("hi"), {"role": "assistant"}], "messages[1].content", "missing field"),
        ([user("hi"), {**bot("x"), "name": "n"}], "messages[1].name", "unknown field"),
        ("hi", "messages", "expected a list of messages"),
    ],
)
def test_conversation_errors(messages: object, field: str, words: str) -> None:
    error = error_of("conversation", {"messages": messages})
    assert error.field == field
    assert words in error.message


def test_records_forbid_extra_fields_and_non_objects() -> None:
    assert error_of("conversation", {"messages": [user("a"), bot("b")], "id": 1}).field == "id"
    assert error_of("conversation", {}).field == "messages"
    assert "expected an object" in error_of("conversation", ["not", "a", "dict"]).message


def test_several_problems_are_counted() -> None:
    error = error_of("conversation", {"messages": [{"role": 1, "content": 2}, bot("b")]})
    assert error.field == "messages[0].role"
    assert "(and 1 more problem)" in error.message


def test_from_prompt_completion() -> None:
    record = Conversation.from_prompt_completion("hi", "hello", system="be nice")
    assert [m.role for m in record.messages] == ["system", "user", "assistant"]
    assert [m.role for m in Conversation.from_prompt_completion("hi", "hello").messages] == [
        "user",
        "assistant",
    ]


@pytest.mark.parametrize(
    ("args", "field"),
    [(("hi", " "), "completion"), (("", "x"), "prompt"), ((1, "x"), "prompt"), (("hi", "x", 3), "system")],
)
def test_from_prompt_completion_errors(args: tuple[object, ...], field: str) -> None:
    with pytest.raises(DataError) as caught:
        Conversation.from_prompt_completion(*args)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_direct_construction_raises_pydantic_errors_and_records_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Message(role="user", content=3)  # type: ignore[arg-type]
    message = Message(role="user", content="x")
    with pytest.raises(ValidationError):
        message.content = "y"  # type: ignore[misc]


# --- Preference ---------------------------------------------------------------------------------------


def test_preference_standard_and_conversational() -> None:
    standard = parse_record("preference", {"prompt": "p", "chosen": "a", "rejected": "b"})
    assert isinstance(standard, Preference)
    assert not standard.is_conversational
    chat = parse_record("preference", {"prompt": [user("p")], "chosen": [bot("a")], "rejected": [bot("b")]})
    assert isinstance(chat, Preference)
    assert chat.is_conversational
    assert chat.chosen == [Message(role="assistant", content="a")]


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"prompt": "p", "chosen": "a", "rejected": "a"}, "rejected", "identical"),
        ({"prompt": [user("p")], "chosen": [bot("a")], "rejected": [bot("a")]}, "rejected", "identical"),
        ({"prompt": "p", "chosen": [bot("a")], "rejected": "b"}, "chosen", "one form"),
        ({"prompt": [user("p")], "chosen": [bot("a")], "rejected": "b"}, "rejected", "one form"),
        ({"prompt": "p", "chosen": " ", "rejected": "b"}, "chosen", "empty"),
        ({"prompt": "", "chosen": "a", "rejected": "b"}, "prompt", "empty"),
        ({"prompt": [], "chosen": [bot("a")], "rejected": [bot("b")]}, "prompt", "no messages"),
        ({"prompt": [user("p")], "chosen": [], "rejected": [bot("b")]}, "chosen", "no messages"),
        (
            {"prompt": [user("p"), bot("x")], "chosen": [bot("a")], "rejected": [bot("b")]},
            "prompt[1].role",
            "end",
        ),
        (
            {"prompt": [user("p")], "chosen": [bot("a"), user("u")], "rejected": [bot("b")]},
            "chosen[1].role",
            "'user'",
        ),
        (
            {"prompt": [user("p")], "chosen": [bot("a")], "rejected": [bot("")]},
            "rejected[0].content",
            "empty",
        ),
        ({"prompt": 5, "chosen": "a", "rejected": "b"}, "prompt", "expected a string or a list of messages"),
        (
            {"prompt": [user("p")], "chosen": [bot("a")], "rejected": [{"role": "x", "content": "b"}]},
            "rejected[0].role",
            "",
        ),
        ({"chosen": "a", "rejected": "b"}, "prompt", "missing"),
    ],
)
def test_preference_errors(data: dict[str, object], field: str, words: str) -> None:
    error = error_of("preference", data)
    assert error.field == field
    assert words in error.message


def test_from_implicit_splits_the_common_prefix() -> None:
    chosen = [user("q1"), bot("a1"), user("q2"), bot("good")]
    rejected = [user("q1"), bot("a1"), user("q2"), bot("bad")]
    record = Preference.from_implicit(chosen, rejected)
    assert [m.content for m in record.prompt] == ["q1", "a1", "q2"]  # type: ignore[union-attr]
    assert record.chosen == [Message(role="assistant", content="good")]
    assert record.rejected == [Message(role="assistant", content="bad")]


@pytest.mark.parametrize(
    ("chosen", "rejected", "field", "words"),
    [
        ([user("a"), bot("x")], [user("b"), bot("y")], "rejected", "no leading messages"),
        ([user("a")], [user("a"), bot("y")], "chosen", "prefix"),
        ([user("a"), bot("x")], [user("a")], "rejected", "prefix"),
        ([user("a"), bot("x")], [user("a"), bot("x")], "rejected", "identical"),
        ([user("a"), bot("x")], [user("a"), bot("x"), user("c")], "chosen", "prefix"),
        ([user("a"), {"role": "robot", "content": "x"}], [user("a")], "chosen[1].role", "expected one of"),
        ("text", [user("a")], "chosen", "list"),
        (
            [user("a"), bot("x"), user("b"), bot("y")],
            [user("a"), bot("x"), user("c"), bot("z")],
            "chosen[2]",
            "differ",
        ),
    ],
)
def test_from_implicit_errors(chosen: object, rejected: object, field: str, words: str) -> None:
    with pytest.raises(DataError) as caught:
        Preference.from_implicit(chosen, rejected)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert words in caught.value.message


# --- Unpaired and kinds -------------------------------------------------------------------------------


def test_unpaired() -> None:
    record = parse_record("unpaired", {"prompt": "p", "completion": "c", "label": False})
    assert isinstance(record, Unpaired)
    assert record.label is False
    chat = parse_record("unpaired", {"prompt": [user("p")], "completion": [bot("c")], "label": True})
    assert chat.is_conversational  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"prompt": "p", "completion": "c", "label": "yes"}, "label"),
        ({"prompt": "p", "completion": "c", "label": 1}, "label"),
        ({"prompt": "p", "completion": "c", "label": None}, "label"),
        ({"prompt": "p", "completion": "", "label": True}, "completion"),
        ({"prompt": "p", "completion": [bot("c")], "label": True}, "completion"),
        ({"prompt": [user("p")], "completion": [user("c")], "label": True}, "completion[0].role"),
        ({"prompt": "p", "completion": "c"}, "label"),
    ],
)
def test_unpaired_errors(data: dict[str, object], field: str) -> None:
    assert error_of("unpaired", data).field == field


def test_kinds() -> None:
    assert set(RECORD_TYPES) == {"conversation", "preference", "unpaired"}
    for kind, cls in RECORD_TYPES.items():
        assert record_class(kind) is cls
        assert cls.kind == kind
    with pytest.raises(DataError, match="unknown record kind 'sft'"):
        record_class("sft")
