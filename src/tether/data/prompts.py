"""Prompts for online RL: rows with a ``prompt`` (a string or a list of messages) and an optional ``tag``.

The tag routes a row to reward components (``--reward harmful=judge:refuse``). Preference files work as is
(their ``prompt`` is used); HH-RLHF transcripts give the conversation before the last answer. Every
problem is a DataError naming the file, line and field, raised before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from tether.data.readers import iter_rows, read_records_with_report
from tether.data.records import Message, as_messages
from tether.errors import DataError


@dataclass(frozen=True)
class RLPrompt:
    prompt: str | tuple[Message, ...]
    tag: str | None = None

    @property
    def messages(self) -> list[Message]:
        return [Message(role="user", content=self.prompt)] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def text(self) -> str:
        """The last user turn (what a judge or a Python reward sees as the request)."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[-1].content


def _prompt(value: object, field: str = "prompt") -> str | tuple[Message, ...]:
    if isinstance(value, str):
        if not value.strip():
            raise DataError("is empty", field=field)
        return value
    if not isinstance(value, list) or not value:
        raise DataError("expected a non-empty string or list of messages", field=field)
    messages = []
    for i, item in enumerate(value):
        try:
            messages.append(Message.model_validate(item))
        except ValidationError as err:
            where = ".".join(str(p) for p in err.errors()[0]["loc"])
            raise DataError(err.errors()[0]["msg"], field=f"{field}[{i}]" + (f".{where}" if where else "")) from None
    if messages[-1].role == "assistant":
        raise DataError("must end with a user, system or tool message", field=f"{field}[{len(messages) - 1}].role")
    return tuple(messages)


def read_prompts(source: str, fmt: str = "auto", *, limit: int | None = None, skip: int = 0) -> list[RLPrompt]:
    """Read prompts (and tags); ``skip`` then ``limit`` select a slice (e.g. held-out prompts)."""
    wanted = None if limit is None else skip + limit
    if fmt == "hh-rlhf":
        records, _ = read_records_with_report(source, "preference", "hh-rlhf", limit=wanted, on_invalid="skip")
        prompts = [RLPrompt(_prompt([m.model_dump() for m in as_messages(r.prompt, "user")])) for r in records]
    else:
        prompts = []
        for line, row in iter_rows(source, fmt):
            try:
                if "prompt" not in row:
                    raise DataError(f"missing field (the row has: {', '.join(map(str, row))})", field="prompt")
                tag = row.get("tag")
                if tag is not None and not isinstance(tag, str):
                    raise DataError(f"must be a string, not {type(tag).__name__}", field="tag")
                prompts.append(RLPrompt(_prompt(row["prompt"]), tag or None))
            except DataError as err:
                raise DataError(err.message, file=source, line=line, field=err.field) from None
            if wanted is not None and len(prompts) >= wanted:
                break
    prompts = prompts[skip:]
    if not prompts:
        raise DataError("no prompts", file=source)
    return prompts
