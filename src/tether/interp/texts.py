"""The texts an inspection runs on: rows of a file with one text field, optionally wrapped in the chat template.

A row holds ``text`` (used as is), ``prompt`` or ``instruction`` (a user message: the instruction lists of
../shared/data/instructions); the first of those present is used unless ``field`` names one. A problem is a
DataError naming the file, the line and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.data.benchmarks.located import located_rows, require_any

FIELDS = ("text", "prompt", "instruction")


@dataclass(frozen=True)
class Text:
    text: str
    source: str
    """``file:line`` of the row."""
    is_instruction: bool
    """A prompt or instruction (a user turn), not raw text."""


def read_texts(path: str | Path, *, field: str | None = None, limit: int | None = None) -> list[Text]:
    """The first ``limit`` texts of ``path`` (JSONL/JSON/CSV/Parquet, or a .txt file with one text per line)."""
    path = str(path)
    if path.endswith(".txt"):
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        texts = [Text(t, f"{path}:{i}", False) for i, t in enumerate(lines, 1) if t.strip()]
        return require_any(texts[:limit], path, "texts")
    out: list[Text] = []
    for loc in located_rows(path):
        if limit is not None and len(out) >= limit:
            break
        name = field or next((f for f in FIELDS if f in loc.row), None)
        if name is None:
            raise loc.error(f"no text field (expected one of {', '.join(FIELDS)})", FIELDS[0])
        out.append(Text(loc.text(name), loc.source, name != "text"))
    return require_any(out, path, "texts")


def model_inputs(tokenizer: Any, texts: Sequence[Text], *, chat: bool = True) -> list[str]:
    """What the model reads: instructions in the tokenizer's chat template with the assistant turn opened
    (``chat``, when the tokenizer has a template), raw texts as they are."""
    template = chat and getattr(tokenizer, "chat_template", None)
    out = []
    for t in texts:
        if template and t.is_instruction:
            messages = [{"role": "user", "content": t.text}]
            out.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        else:
            out.append(t.text)
    return out
