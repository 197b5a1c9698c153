"""Adapter for Anthropic's HH-RLHF transcripts (https://huggingface.co/datasets/Anthropic/hh-rlhf).

Each row holds two full transcripts, ``chosen`` and ``rejected``, written as
``"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ...\\n\\nAssistant: ..."``. Both share the conversation up
to the last Human turn and differ in the final Assistant turn, which becomes a conversational
:class:`~tether.data.records.Preference`. Real rows include empty final turns and identical pairs: read
them with ``read_records(..., fmt="hh-rlhf", on_invalid="skip")`` to drop those and count them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import cast

from tether.data.records import Message, Preference, Role, describe, parse_record
from tether.errors import DataError

_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES: dict[str, Role] = {"Human": "user", "Assistant": "assistant"}
_SPEAKER = re.compile(r"([^\s:][^\n:]{0,40}):")


def parse_transcript(text: object, *, field: str | None = None) -> list[Message]:
    """``"\\n\\nHuman: hi\\n\\nAssistant: hello"`` -> ``[user: hi, assistant: hello]``.

    Leading whitespace is ignored and each turn's text is stripped. Raises DataError (naming ``field``)
    for a non-string or for text that does not start with a Human turn.
    """
    if not isinstance(text, str):
        raise DataError(f"expected a transcript string, got {describe(text)}", field=field)
    parts = _TURN.split("\n\n" + text.lstrip())  # ["", "Human", " hi", "Assistant", " hello", ...]
    if parts[0]:
        speaker = _SPEAKER.match(text.lstrip())
        if speaker:
            raise DataError(f"unknown speaker {speaker.group(1)!r}; expected 'Human' or 'Assistant'", field=field)
        raise DataError("does not start with a 'Human:' turn", field=field)
    if parts[1] != "Human":
        raise DataError(f"starts with an {parts[1]!r} turn; expected 'Human:' first", field=field)
    return [
        Message(role=_ROLES[speaker], content=content.strip())
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def row_to_preference(row: Mapping[str, object]) -> Preference:
    """An HH-RLHF row ``{"chosen": transcript, "rejected": transcript}`` as a conversational Preference.

    The prompt is the shared conversation up to and including the last Human turn; chosen and rejected are
    each transcript's single final Assistant turn.
    """
    turns: dict[str, list[Message]] = {}
    for name in ("chosen", "rejected"):
        if name not in row:
            raise DataError(f"missing field (the row has: {', '.join(map(str, row)) or 'nothing'})", field=name)
        turns[name] = parse_transcript(row[name], field=name)
        trailing = (i for i, message in enumerate(reversed(turns[name])) if message.role != "assistant")
        final = next(trailing, len(turns[name]))  # how many Assistant turns follow the last Human turn
        if final != 1:
            raise DataError(
                f"must end with exactly one Assistant turn after the last Human turn (found {final})",
                field=name,
            )
    chosen, rejected = turns["chosen"], turns["rejected"]
    if chosen[:-1] != rejected[:-1]:
        pairs = zip(chosen[:-1], rejected[:-1], strict=False)
        turn = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(chosen), len(rejected)) - 1)
        raise DataError(
            f"does not share the conversation before the final Assistant turn with chosen "
            f"(they differ at turn {turn + 1})",
            field="rejected",
        )
    record = {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}
    return cast(Preference, parse_record("preference", record))
