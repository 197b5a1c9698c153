"""Typed records: the one data model that every tether command reads and writes.

Three kinds of record, each a strict pydantic model (unknown fields are refused, a number is not a string,
``"yes"`` is not a bool):

- :class:`Conversation`: a chat to imitate (SFT).
- :class:`Preference`: a prompt with a chosen and a rejected completion (DPO, reward models).
- :class:`Unpaired`: a prompt with one completion labelled desirable or not (KTO).

Prompts and completions come in two forms, never mixed within a record: *standard* (plain strings) or
*conversational* (lists of :class:`Message`; the prompt ends with a user, system or tool message and the
completion is made of assistant messages).

Build records with :func:`parse_record` or the ``from_*`` constructors to get a
:class:`~tether.errors.DataError` that names the offending field (``messages[3].content``); calling a model
class directly raises pydantic's ``ValidationError`` as usual.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from tether.errors import DataError

Role = Literal["system", "user", "assistant", "tool"]
RecordKind = Literal["conversation", "preference", "unpaired"]

_CONFIG = ConfigDict(extra="forbid", strict=True, frozen=True)
_IDENTICAL = "is identical to chosen; a preference needs two different completions"


class Message(BaseModel):
    """One turn of a chat."""

    model_config = _CONFIG

    role: Role
    content: str


def as_messages(value: str | list[Message], role: Role) -> list[Message]:
    """A text as one message from ``role``; a message list as it is."""
    return [Message(role=role, content=value)] if isinstance(value, str) else list(value)


def _form(value: object) -> str | None:
    """Union discriminator: ``"text"`` for a string, ``"chat"`` for a list, ``None`` (an error) otherwise."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "chat"
    return None


TextOrMessages = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[Message], Tag("chat")],
    Discriminator(
        _form,
        custom_error_type="text_or_messages",
        custom_error_message="expected a string or a list of messages",
    ),
]
"""A prompt or completion: a string (standard form) or a list of messages (conversational form)."""


def _rule(reason: str, field: str) -> PydanticCustomError:
    """A rule violation that carries the exact field path, which model-level errors otherwise lack."""
    return PydanticCustomError("record_rule", "{reason}", {"reason": reason, "field": field})


def _check_messages(messages: list[Message], field: str, *, completion: bool) -> None:
    if not messages:
        raise _rule("has no messages", field)
    if not completion:
        if messages[-1].role == "assistant":
            last = f"{field}[{len(messages) - 1}].role"
            raise _rule("a prompt must end with a user, system or tool message, not an assistant one", last)
        return
    for i, message in enumerate(messages):
        if message.role != "assistant":
            raise _rule(f"a completion holds only assistant messages, not {message.role!r}", f"{field}[{i}].role")
        if not message.content.strip():
            raise _rule("assistant message is empty", f"{field}[{i}].content")


def _check_form(prompt: str | list[Message], completions: dict[str, str | list[Message]]) -> None:
    """One form for the whole record; a non-empty prompt and non-empty completions."""
    forms = ("a string", "a list of messages")
    chat = isinstance(prompt, list)
    for name, value in completions.items():
        if isinstance(value, list) != chat:
            raise _rule(f"is {forms[not chat]} but prompt is {forms[chat]}; use one form for all", name)
    for name, value in {"prompt": prompt, **completions}.items():
        if isinstance(value, list):
            _check_messages(value, name, completion=name != "prompt")
        elif not value.strip():
            raise _rule("is empty", name)


class Conversation(BaseModel):
    """A chat to learn from: non-empty, with at least one (non-empty) assistant message."""

    model_config = _CONFIG
    kind: ClassVar[RecordKind] = "conversation"

    messages: list[Message]

    @model_validator(mode="after")
    def _check(self) -> Conversation:
        if not self.messages:
            raise _rule("has no messages", "messages")
        for i, message in enumerate(self.messages):
            if message.role == "assistant" and not message.content.strip():
                raise _rule("assistant message is empty", f"messages[{i}].content")
        if not any(message.role == "assistant" for message in self.messages):
            raise _rule("has no assistant message, so there is nothing to learn from", "messages")
        return self

    @classmethod
    def from_prompt_completion(cls, prompt: str, completion: str, system: str | None = None) -> Conversation:
        """``[system], user: prompt, assistant: completion``; raises DataError naming the bad argument."""
        if system is not None and not isinstance(system, str):
            raise DataError(f"expected a string, got {describe(system)}", field="system")
        for name, value in (("prompt", prompt), ("completion", completion)):
            if not isinstance(value, str):
                raise DataError(f"expected a string, got {describe(value)}", field=name)
            if not value.strip():
                raise DataError("is empty", field=name)
        messages = [{"role": "system", "content": system}] if system is not None else []
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        return _validate(cls, {"messages": messages})


class Preference(BaseModel):
    """A prompt with a preferred (``chosen``) and a dispreferred (``rejected``) completion."""

    model_config = _CONFIG
    kind: ClassVar[RecordKind] = "preference"

    prompt: TextOrMessages
    chosen: TextOrMessages
    rejected: TextOrMessages
    margin: float | None = None
    """How much better chosen is than rejected (Llama 2's reward-model margin); only `tether rm train`
    uses it."""
    p_chosen: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] | None = None
    """A soft label: the probability that ``chosen`` really is the better completion (e.g. an AI judge's, from
    `tether cai label`); absent means 1. Writers keep it >= 0.5 by swapping chosen and rejected. It reaches
    the conservative and robust DPO losses as the per-example flip rate ``eps = 1 - p_chosen`` (overriding
    ``--label-smoothing``) and `tether rm train` as the soft Bradley-Terry target (:mod:`tether.losses`)."""

    @property
    def is_conversational(self) -> bool:
        return isinstance(self.prompt, list)

    @model_validator(mode="after")
    def _check(self) -> Preference:
        _check_form(self.prompt, {"chosen": self.chosen, "rejected": self.rejected})
        if self.chosen == self.rejected:
            raise _rule(_IDENTICAL, "rejected")
        return self

    @classmethod
    def from_implicit(
        cls,
        chosen_messages: Sequence[Message | Mapping[str, Any]],
        rejected_messages: Sequence[Message | Mapping[str, Any]],
    ) -> Preference:
        """Split the longest common leading messages of two full conversations off as the prompt.

        Raises DataError when the conversations share no leading message, or when one is a prefix of the
        other (nothing would be left as its completion).
        """
        chosen = _message_list(chosen_messages, "chosen")
        rejected = _message_list(rejected_messages, "rejected")
        if chosen == rejected:
            raise DataError(_IDENTICAL, field="rejected")
        shared = next(
            (i for i, (a, b) in enumerate(zip(chosen, rejected, strict=False)) if a != b),
            min(len(chosen), len(rejected)),
        )
        if shared == 0:
            raise DataError(
                "chosen and rejected share no leading messages, so there is no implicit prompt; add a `prompt` field",
                field="rejected",
            )
        if shared in (len(chosen), len(rejected)):
            side = "chosen" if shared == len(chosen) else "rejected"
            raise DataError("is a prefix of the other conversation, so it has no completion", field=side)
        if chosen[shared - 1].role == "assistant":
            raise DataError(
                f"chosen and rejected first differ at message {shared + 1}, after an assistant message; "
                "the implicit prompt must end with a user, system or tool message",
                field=f"chosen[{shared}]",
            )
        return _validate(cls, {"prompt": chosen[:shared], "chosen": chosen[shared:], "rejected": rejected[shared:]})


class Unpaired(BaseModel):
    """A prompt with one completion and whether it is desirable (``label=True``) or not."""

    model_config = _CONFIG
    kind: ClassVar[RecordKind] = "unpaired"

    prompt: TextOrMessages
    completion: TextOrMessages
    label: bool

    @property
    def is_conversational(self) -> bool:
        return isinstance(self.prompt, list)

    @model_validator(mode="after")
    def _check(self) -> Unpaired:
        _check_form(self.prompt, {"completion": self.completion})
        return self


Record = Conversation | Preference | Unpaired

RECORD_TYPES: dict[str, type[Record]] = {
    "conversation": Conversation,
    "preference": Preference,
    "unpaired": Unpaired,
}


def record_class(kind: str) -> type[Record]:
    """The record class for a kind name; DataError for an unknown kind."""
    try:
        return RECORD_TYPES[kind]
    except (KeyError, TypeError):
        raise DataError(f"unknown record kind {kind!r}; expected one of {', '.join(RECORD_TYPES)}") from None


def parse_record(kind: str, data: object, *, file: str | None = None, line: int | None = None) -> Record:
    """Validate ``data`` (a dict) as a record of ``kind``; DataError with the field path on failure."""
    return _validate(record_class(kind), data, file=file, line=line)


def _validate(cls: type[Any], data: object, *, file: str | None = None, line: int | None = None) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise validation_error_to_data_error(exc, file=file, line=line) from None


_MESSAGE_LIST = TypeAdapter(list[Message])


def _message_list(value: object, field: str) -> list[Message]:
    try:
        return _MESSAGE_LIST.validate_python(value, strict=True)
    except ValidationError as exc:
        raise validation_error_to_data_error(exc, prefix=field) from None


_UNION_TAGS = {"text", "chat"}
_MESSAGES = {
    "missing": "missing field",
    "extra_forbidden": "unknown field",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "list_type": "expected a list of messages",
    "model_type": "expected an object with `role` and `content`",
    "text_or_messages": "expected a string or a list of messages",
}
_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40


def describe(value: object) -> str:
    """A short description of a bad value for error messages: ``str 'yes'``, ``int 5``, ``null``."""
    return "null" if value is None else f"{type(value).__name__} {_repr.repr(value)}"


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``('messages', 2, 'role')`` -> ``messages[2].role`` (union tags dropped)."""
    path = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (i == 1 and part in _UNION_TAGS):
            path += f".{part}" if path else part
    return path


def validation_error_to_data_error(
    exc: ValidationError, *, file: str | None = None, line: int | None = None, prefix: str = ""
) -> DataError:
    """The first problem of a pydantic ValidationError as a DataError with a ``messages[2].role`` field."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "record_rule":
        field, message = first["ctx"]["field"], first["ctx"]["reason"]
    else:
        field = _field_path(first["loc"])
        message = _MESSAGES.get(first["type"], first["msg"])
        if first["type"] == "literal_error":
            message = f"expected one of {first['ctx']['expected']}"
        if first["type"] != "missing":
            message += f", got {describe(first['input'])}"
    if prefix:
        field = prefix + (field if not field or field.startswith("[") else f".{field}")
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return DataError(message, file=file, line=line, field=field or None)
