"""Rows of a benchmark file with errors located at ``file:line: field``, and the helpers every reader shares."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.data.readers import HUB_PREFIX, iter_rows
from tether.data.records import describe
from tether.errors import DataError

UNCATEGORISED = "uncategorised"


@dataclass(frozen=True)
class LocatedRow:
    """One row and where it came from; its methods read fields or raise a DataError located at the row."""

    file: str
    line: int
    row: Mapping[str, Any]

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def stem(self) -> str:
        return Path(self.file.removeprefix(HUB_PREFIX)).stem

    def error(self, message: str, field: str | None = None) -> DataError:
        return DataError(message, file=self.file, line=self.line, field=field)

    def get(self, name: str) -> Any:
        if name not in self.row:
            names = list(map(str, self.row))
            columns = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            raise self.error(f"missing (the row has: {columns or 'no fields'})", name)
        return self.row[name]

    def text(self, name: str, value: Any = None, *, given: bool = False) -> str:
        """A required non-blank string: the field ``name``, or ``value`` found at that field path."""
        value = value if given else self.get(name)
        if not isinstance(value, str):
            raise self.error(f"expected text, got {describe(value)}", name)
        if not value.strip():
            raise self.error("empty", name)
        return value

    def optional_text(self, name: str) -> str | None:
        """A string field that may be missing, null or blank (None then)."""
        value = self.row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return self.text(name)

    def ident(self, name: str, *, required: bool = False) -> str | None:
        """An id field (text or integer), as a string; None when optional and missing or blank."""
        value = self.get(name) if required else self.row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise self.error("empty", name)
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error(f"expected text or an integer, got {describe(value)}", name)
        return str(value).strip()

    def index(self, name: str, count: int, value: Any = None, *, given: bool = False) -> int:
        """An integer in ``[0, count)``; CSV text such as ``"2"`` is accepted."""
        value = value if given else self.get(name)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected an integer index, got {describe(value)}", name)
        if not 0 <= value < count:
            raise self.error(f"{value} is out of range for {count} options (0 to {count - 1})", name)
        return value

    def one_of(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name)
        if value not in allowed:
            raise self.error(f"expected one of {', '.join(map(repr, allowed))}, got {value!r}", name)
        return value

    def structured(self, name: str, kind: type, value: Any = None, *, given: bool = False) -> Any:
        """A dict or list field; a JSON string (a CSV cell) is decoded first."""
        value = value if given else self.get(name)
        if isinstance(value, str):
            with contextlib.suppress(ValueError, RecursionError):  # not JSON: reported as text below
                value = json.loads(value)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, kind):
            raise self.error(f"expected a {'list' if kind is list else 'mapping'}, got {describe(value)}", name)
        return value

    def texts(self, name: str, value: Any = None, *, given: bool = False) -> tuple[str, ...]:
        items = self.structured(name, list, value, given=given)
        return tuple(self.text(f"{name}[{i}]", item, given=True) for i, item in enumerate(items))


def source_files(path: str | Path, pattern: str) -> list[str]:
    """``path`` itself, or the files in directory ``path`` that match ``pattern``, sorted by name."""
    directory = Path(path)
    if str(path).startswith(HUB_PREFIX) or not directory.is_dir():
        return [str(path)]
    files = sorted(str(p) for p in directory.glob(pattern) if p.is_file())
    if not files:
        raise DataError(f"no {pattern} files in the directory", file=str(path))
    return files


def located_rows(
    source: str, fmt: str = "auto", *, split: str = "train", config: str | None = None
) -> Iterator[LocatedRow]:
    """Located rows of a file or hub dataset; ``config`` names a hub dataset's configuration."""
    is_hub = fmt == "hub" or (fmt == "auto" and source.startswith(HUB_PREFIX))
    if config is None or not is_hub:
        for line, row in iter_rows(source, fmt, split=split):
            yield LocatedRow(source, line, row)
        return
    name, number = source.removeprefix(HUB_PREFIX), 0
    try:
        import datasets

        for row in datasets.load_dataset(name, config, split=split):
            number += 1
            yield LocatedRow(source, number, dict(row))
    except Exception as exc:  # network, missing dataset/config/split, bad cache: all reported alike
        where = f"row {number + 1} of " if number else ""
        raise DataError(
            f"cannot load {where}hub dataset {name!r} (config {config!r}, split {split!r}): {exc}", file=source
        ) from None


def add_unique(samples: list[Any], loc: LocatedRow, sample: Any, seen: dict[str, str], id_field: str) -> None:
    """Append ``sample``, raising a DataError when its id was already used."""
    if sample.id in seen:
        raise loc.error(f"duplicate id {sample.id!r} (first used at {seen[sample.id]})", id_field)
    seen[sample.id] = loc.source
    samples.append(sample)


def require_any(samples: list[Any], source: str | Path, what: str) -> list[Any]:
    if not samples:
        raise DataError(f"no {what} found (the source has no rows)", file=str(source))
    return samples
