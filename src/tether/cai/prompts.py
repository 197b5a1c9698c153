"""The prompts `tether cai revise` answers, read and checked before any model loads.

A row holds ``prompt`` (a text, or a list of messages ending with a user, system or tool message) or
``instruction`` (a text: the instruction lists of ../shared/data/instructions); ``id`` and ``category`` are
optional. Ids are the row's ``id`` or ``<file stem>:<line>`` and must be unique, as chains are resumed by id.
Every problem is a DataError naming the file, the line and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from tether.data.benchmarks.located import LocatedRow, add_unique, located_rows, require_any
from tether.data.records import Message


@dataclass(frozen=True)
class CaiPrompt:
    id: str
    messages: tuple[Message, ...]
    source: str
    """``file:line`` of the row."""
    category: str | None = None

    @property
    def text(self) -> str:
        """The last user turn (what the usability check compares revisions with)."""
        return next((m.content for m in reversed(self.messages) if m.role == "user"), self.messages[-1].content)


def _messages(loc: LocatedRow) -> tuple[Message, ...]:
    if "prompt" not in loc.row and "instruction" in loc.row:
        return (Message(role="user", content=loc.text("instruction")),)
    value = loc.get("prompt")
    if isinstance(value, str):
        return (Message(role="user", content=loc.text("prompt")),)
    items = loc.structured("prompt", list)
    if not items:
        raise loc.error("has no messages", "prompt")
    messages = []
    for i, item in enumerate(items):
        try:
            messages.append(Message.model_validate(item))
        except ValidationError as err:
            where = ".".join(str(p) for p in err.errors()[0]["loc"])
            raise loc.error(err.errors()[0]["msg"], f"prompt[{i}]" + (f".{where}" if where else "")) from None
        if not messages[-1].content.strip():
            raise loc.error("is empty", f"prompt[{i}].content")
    if messages[-1].role == "assistant":
        last = f"prompt[{len(messages) - 1}].role"
        raise loc.error("a prompt must end with a user, system or tool message, not an assistant one", last)
    return tuple(messages)


def read_cai_prompts(source: str | Path, fmt: str = "auto", *, limit: int | None = None) -> list[CaiPrompt]:
    """Every row of ``source`` checked (whatever ``limit``), then the first ``limit`` prompts returned."""
    prompts: list[CaiPrompt] = []
    seen: dict[str, str] = {}
    for loc in located_rows(str(source), fmt):
        if "prompt" not in loc.row and "instruction" not in loc.row:
            names = ", ".join(map(str, loc.row)) or "no fields"
            raise loc.error(f"missing (a row needs `prompt` or `instruction`; it has: {names})", "prompt")
        given = loc.ident("id")
        prompt = CaiPrompt(given or f"{loc.stem}:{loc.line}", _messages(loc), loc.source, loc.optional_text("category"))
        add_unique(prompts, loc, prompt, seen, "id")
    require_any(prompts, source, "prompts")
    return prompts[:limit] if limit is not None else prompts
