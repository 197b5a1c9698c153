"""Reading texts to check or to train on: JSONL, JSON, CSV, Parquet, plain text (one per line).

``FILE#field=value`` keeps only the rows whose ``field`` equals ``value`` (``train.jsonl#kind=harmful``).
A row's text is the first field present of ``field`` (when given), ``prompt``, ``instruction``, ``text``,
``goal``, ``behavior``; a JSON list of strings and a ``.txt`` file are texts as they are. Every problem is a
DataError naming the file, line and field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.data.readers import iter_rows
from tether.errors import DataError

TEXT_FIELDS = ("prompt", "instruction", "text", "goal", "behavior")


@dataclass(frozen=True)
class TextRow:
    line: int
    text: str
    row: dict[str, Any] = field(default_factory=dict)


def _strings_json(path: Path) -> list[TextRow] | None:
    """A JSON list whose items are all strings, with the line each starts on; None for anything else."""
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, list) or not document or not all(isinstance(x, str) for x in document):
        return None
    text = path.read_text(encoding="utf-8-sig")
    rows, pos = [], 0
    for item in document:
        encoded = json.dumps(item, ensure_ascii=False)
        at = text.find(encoded[:40], pos)
        line = text.count("\n", 0, at) + 1 if at >= 0 else 0
        pos = at + 1 if at >= 0 else pos
        rows.append(TextRow(line, item))
    return rows


def split_filter(source: str | Path) -> tuple[str, tuple[str, str] | None]:
    """``"f.jsonl#kind=harmful"`` -> ``("f.jsonl", ("kind", "harmful"))``."""
    text = str(source)
    if "#" in text and not Path(text).exists():
        file, _, condition = text.rpartition("#")
        name, sep, value = condition.partition("=")
        if not sep or not name:
            raise DataError(f"expected FILE#field=value, got {text!r}", file=file)
        return file, (name, value)
    return text, None


def read_texts(source: str | Path, *, text_field: str | None = None, fmt: str = "auto") -> list[TextRow]:
    """Every non-empty text of ``source`` (see the module docstring)."""
    file, condition = split_filter(source)
    path = Path(file)
    if not path.is_file():
        raise DataError("no such file" if not path.exists() else "not a file", file=file)
    if fmt == "txt" or (fmt == "auto" and path.suffix.lower() == ".txt"):
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        return [TextRow(i, line.strip()) for i, line in enumerate(lines, 1) if line.strip()]
    if path.suffix.lower() == ".json" and fmt in ("auto", "json"):
        strings = _strings_json(path)
        if strings is not None:
            return strings
    names = (text_field,) if text_field else TEXT_FIELDS
    rows = []
    for line, row in iter_rows(file, fmt):
        if condition is not None and str(row.get(condition[0])) != condition[1]:
            continue
        name = next((n for n in names if n in row), None)
        if name is None:
            raise DataError(f"no text field (expected one of: {', '.join(names)})", file=file, line=line)
        value = row[name]
        if not isinstance(value, str):
            raise DataError(f"expected text, got {type(value).__name__}", file=file, line=line, field=name)
        if value.strip():
            rows.append(TextRow(line, value, dict(row)))
    if not rows:
        raise DataError("no texts found" + (f" with {condition[0]} = {condition[1]!r}" if condition else ""), file=file)
    return rows
