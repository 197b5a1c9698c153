"""Read records from JSONL, JSON, CSV and Parquet files, hub datasets and adapted formats (HH-RLHF).

Every problem is a :class:`~tether.errors.DataError` naming the file, the line (or row) and the field,
e.g. ``train.jsonl:3: field 'messages[2].role': expected one of ...``; no other exception escapes and no
partial data is returned on error. With ``on_invalid="skip"`` invalid rows are dropped and counted in a
:class:`ReadReport` instead; problems with the file as a whole (unreadable, not valid JSON) still raise.

Row numbers: JSONL and CSV give physical line numbers (a CSV's header is line 1); JSON gives the line on
which each object starts (or its 1-based index when objects share lines); Parquet and hub datasets give
the 1-based row index.

Field mapping (unknown extra columns are ignored, e.g. ids):

- conversation: ``messages``; or ``prompt`` + ``completion`` strings (optional ``system``).
- preference: ``prompt``, ``chosen``, ``rejected``; or ``chosen`` + ``rejected`` as full conversations,
  whose common leading messages become the prompt.
- unpaired: ``prompt``, ``completion``, ``label``.

In CSV, cells are text: an empty cell counts as missing, ``messages`` (and a conversational prompt or
completion) is a JSON string, and a label may be true/false/1/0 in any case.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from tether.data.hh_rlhf import row_to_preference
from tether.data.records import (
    RECORD_TYPES,
    Conversation,
    Preference,
    Record,
    RecordKind,
    Unpaired,
    describe,
    parse_record,
)
from tether.errors import DataError

HUB_PREFIX = "hub:"
OnInvalid = Literal["error", "skip"]
Row = dict[str, Any]
RowParser = Callable[[Mapping[str, Any]], Record]

_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_EXAMPLES = 5  # how many skipped rows a ReadReport quotes in full


@dataclass
class ReadReport:
    """What one read did: rows seen, records kept, and the rows skipped with ``on_invalid="skip"``."""

    source: str
    fmt: str
    kind: str
    rows: int = 0
    records: int = 0
    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    """Skipped rows per reason, ``"field: message"`` with list indices written ``[*]``."""
    examples: list[str] = field(default_factory=list)
    """The first few skipped rows' full errors, ``file:line: field: message``."""
    lines: list[int] = field(default_factory=list)
    """The line (or row number) of each returned record, so later stages can point back at the file."""

    def add_skipped(self, error: DataError) -> None:
        self.skipped += 1
        field_name = re.sub(r"\[\d+\]", "[*]", error.field) if error.field else None
        self.reasons[f"{field_name}: {error.message}" if field_name else error.message] += 1
        if len(self.examples) < _EXAMPLES:
            self.examples.append(str(error))

    def __str__(self) -> str:
        text = f"{self.source} ({self.fmt}): {self.rows} rows, {self.records} {self.kind} records"
        if self.skipped:
            reasons = "; ".join(f"{count} x {reason}" for reason, count in self.reasons.most_common())
            text += f", {self.skipped} skipped ({reasons})"
        return text


def read_records(
    source: str | Path,
    kind: RecordKind,
    fmt: str = "auto",
    *,
    split: str = "train",
    limit: int | None = None,
    on_invalid: OnInvalid = "error",
) -> list[Record]:
    """Read and validate every row of ``source`` as a record of ``kind``.

    ``fmt`` is ``auto`` (by extension, or the ``hub:`` prefix), ``jsonl``, ``json``, ``csv``, ``parquet``,
    ``hub`` (``datasets.load_dataset(name, split=split)``), or an adapter such as ``hh-rlhf`` (rows read
    from a file or hub dataset of any of those formats). ``limit`` stops after that many records.
    ``on_invalid="skip"`` drops invalid rows (see :func:`read_records_with_report` for how many and why).
    Raises DataError for any problem, and when no record is left.
    """
    records, _ = read_records_with_report(source, kind, fmt, split=split, limit=limit, on_invalid=on_invalid)
    return records


@overload
def read_records_with_report(
    source: str | Path,
    kind: Literal["conversation"],
    fmt: str = "auto",
    *,
    split: str = "train",
    limit: int | None = None,
    on_invalid: OnInvalid = "error",
) -> tuple[list[Conversation], ReadReport]: ...


@overload
def read_records_with_report(
    source: str | Path,
    kind: Literal["preference"],
    fmt: str = "auto",
    *,
    split: str = "train",
    limit: int | None = None,
    on_invalid: OnInvalid = "error",
) -> tuple[list[Preference], ReadReport]: ...


@overload
def read_records_with_report(
    source: str | Path,
    kind: Literal["unpaired"],
    fmt: str = "auto",
    *,
    split: str = "train",
    limit: int | None = None,
    on_invalid: OnInvalid = "error",
) -> tuple[list[Unpaired], ReadReport]: ...


@overload
def read_records_with_report(
    source: str | Path,
    kind: RecordKind,
    fmt: str = "auto",
    *,
    split: str = "train",
    limit: int | None = None,
    on_invalid: OnInvalid = "error",
) -> tuple[list[Record], ReadReport]: ...


def read_records_with_report(
    source: str | Path,
    kind: RecordKind,
    fmt: str = "auto",
    *,
    split: str = "train",
    limit: int | None = None,
    on_invalid: OnInvalid = "error",
) -> tuple[list[Any], ReadReport]:
    """:func:`read_records`, plus a :class:`ReadReport` of rows read and skipped."""
    file = str(source)
    container = _container(file, fmt)
    parse_row = _row_parser(file, kind, fmt)
    if on_invalid not in ("error", "skip"):
        raise DataError(f"on_invalid must be 'error' or 'skip', not {on_invalid!r}", file=file)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive integer, not {limit!r}", file=file)
    described = f"{fmt} ({container})" if fmt not in (container, "auto") else container
    report = ReadReport(source=file, fmt=described, kind=kind)
    records: list[Record] = []
    for line, row in _rows(file, container, split):
        report.rows += 1
        try:
            if isinstance(row, DataError):
                raise row
            records.append(parse_row(_decode_csv_row(row) if container == "csv" else row))
            report.lines.append(line)
        except DataError as exc:
            located = DataError(exc.message, file=file, line=line, field=exc.field)
            if on_invalid == "error":
                raise located from None
            report.add_skipped(located)
            continue
        if limit is not None and len(records) >= limit:
            break
    report.records = len(records)
    if not records:
        why = "the source has no rows"
        if report.skipped:
            why = f"all {report.skipped} rows are invalid; the first: {report.examples[0]}"
        raise DataError(f"no {kind} records found ({why})", file=file)
    return records, report


def iter_rows(source: str | Path, fmt: str = "auto", *, split: str = "train") -> Iterator[tuple[int, Row]]:
    """Yield ``(line or row number, raw row dict)`` without validating records (CSV cells stay text)."""
    file = str(source)
    for line, row in _rows(file, _container(file, fmt), split):
        if isinstance(row, DataError):
            raise DataError(row.message, file=file, line=line, field=row.field)
        yield line, row


# --- formats -------------------------------------------------------------------------------------------


def _container(file: str, fmt: str) -> str:
    """How to read rows: the format itself, or what the source's name says for ``auto`` and adapters."""
    if not isinstance(fmt, str):
        raise DataError(f"fmt must be a string, not {describe(fmt)}", file=file)
    if fmt in _CONTAINERS or fmt == "hub":
        return fmt
    if fmt != "auto" and fmt not in ADAPTERS:
        raise DataError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}", file=file)
    if file.startswith(HUB_PREFIX):
        return "hub"
    suffix = Path(file).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise DataError(
            f"cannot tell the format from the extension {suffix or '(none)'!r}; "
            f"name the format with --data-format (--prompts-format for RL prompts; fmt= in Python), one of "
            f"{', '.join(FORMATS)}, or name a hub dataset as {HUB_PREFIX}NAME",
            file=file,
        )
    return _EXTENSIONS[suffix]


def _rows(file: str, container: str, split: str) -> Iterator[tuple[int, Row | DataError]]:
    """Rows of a source; a row-level problem comes as a DataError in place of the row, to raise or skip."""
    if container == "hub":
        return _hub_rows(file.removeprefix(HUB_PREFIX), split, file)
    path = Path(file)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # e.g. a name too long or with a NUL byte
        is_file = False
    if not is_file:
        raise DataError("no such file" if not path.exists() else "not a file", file=file)
    return _CONTAINERS[container](path, file)


def _read_text(path: Path, file: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", file=file) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"not valid UTF-8 text (byte {exc.start})", file=file, line=line) from None


def _json_value(text: str | bytes) -> tuple[Any, DataError | None]:
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", line=exc.lineno)
    except (ValueError, RecursionError) as exc:  # too-long integer, too deep nesting
        return None, DataError(f"malformed JSON: {exc}")


def _as_row(value: object) -> Row | DataError:
    if isinstance(value, dict):
        return value
    return DataError(f"expected a JSON object, got {describe(value)}")


def _jsonl_rows(path: Path, file: str) -> Iterator[tuple[int, Row | DataError]]:
    try:
        with path.open("rb") as stream:
            for number, raw in enumerate(stream, 1):
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    yield number, DataError(f"not valid UTF-8 text (byte {exc.start} of the line)")
                    continue
                value, error = _json_value(text)
                yield number, error or _as_row(value)
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", file=file) from None


def _json_rows(path: Path, file: str) -> Iterator[tuple[int, Row | DataError]]:
    text = _read_text(path, file)
    document, error = _json_value(text)
    if error:
        raise DataError(error.message, file=file, line=error.line) from None
    items = document.get("data") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise DataError('expected a JSON list of objects, or {"data": [...]}', file=file, line=1)
    lines = _item_lines(text, in_data=isinstance(document, dict))
    for index, item in enumerate(items):
        yield (lines[index] if lines else index + 1), _as_row(item)


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _item_lines(text: str, *, in_data: bool) -> list[int] | None:
    """The line on which each item of the top-level list (or of ``{"data": [...]}``) starts.

    ``text`` is valid JSON. None when two items start on the same line, so that line numbers would
    not tell them apart (the caller then numbers items 1, 2, ...).
    """

    def skip(pos: int) -> int:
        match = _WHITESPACE.match(text, pos)
        return match.end() if match else pos

    def after_value(pos: int) -> int:
        pos = skip(_DECODER.raw_decode(text, pos)[1])
        return skip(pos + 1) if text[pos] == "," else pos

    try:
        pos = skip(0)
        if in_data:  # find the last "data" key's value, as json.loads keeps the last duplicate
            start, pos = None, skip(pos + 1)
            while text[pos] != "}":
                key, pos = _DECODER.raw_decode(text, pos)
                pos = skip(skip(pos) + 1)  # past ':'
                start = pos if key == "data" else start
                pos = after_value(pos)
            if start is None:
                return None
            pos = start
        starts, pos = [], skip(pos + 1)  # past '['
        while text[pos] != "]":
            starts.append(pos)
            pos = after_value(pos)
    except (ValueError, IndexError, RecursionError):
        return None
    newlines = [match.start() for match in re.finditer("\n", text)]
    lines = [bisect.bisect(newlines, start) + 1 for start in starts]
    return lines if len(set(lines)) == len(lines) else None


def _csv_rows(path: Path, file: str) -> Iterator[tuple[int, Row | DataError]]:
    reader = csv.reader(io.StringIO(_read_text(path, file), newline=""))
    header: list[str] | None = None
    end = 0  # the physical line on which the previous record ended
    try:
        for cells in reader:
            start, end = end + 1, reader.line_num
            if not cells:  # a blank line
                continue
            if header is None:
                duplicates = sorted({name for name in cells if cells.count(name) > 1})
                if duplicates:
                    raise DataError(f"duplicate column {duplicates[0]!r} in the header", file=file, line=start)
                header = cells
            elif len(cells) != len(header):
                yield start, DataError(f"the row has {len(cells)} cells but the header has {len(header)}")
            else:
                yield start, dict(zip(header, cells, strict=True))
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", file=file, line=reader.line_num) from None


_LABELS = {"true": True, "1": True, "false": False, "0": False}
_TEXT_OR_MESSAGES = ("prompt", "chosen", "rejected", "completion")


def _decode_csv_row(row: Row) -> Row:
    """CSV cells are text: drop empty cells, decode JSON message lists and true/false/1/0 labels."""
    decoded: Row = {}
    for name, cell in row.items():
        if cell == "":
            continue
        if name == "messages":
            value, error = _json_value(cell)
            if error:
                raise DataError(f"expected a JSON list of messages; {error.message}", field=name)
            decoded[name] = value
        elif name in _TEXT_OR_MESSAGES and cell.lstrip().startswith("["):
            value, error = _json_value(cell)  # a conversational prompt/completion, or text in brackets
            is_messages = isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
            decoded[name] = value if is_messages else cell
        elif name == "label":
            decoded[name] = _LABELS.get(cell.strip().lower(), cell)
        elif name in ("margin", "p_chosen"):
            try:
                decoded[name] = float(cell)
            except ValueError:
                raise DataError(f"expected a number, got {cell!r}", field=name) from None
        else:
            decoded[name] = cell
    return decoded


def _parquet_rows(path: Path, file: str) -> Iterator[tuple[int, Row | DataError]]:
    number = 0
    try:
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    number += 1
                    yield number, row
    except Exception as exc:  # pyarrow raises many types (ArrowInvalid, OSError, ...): wrap them all
        raise DataError(f"cannot read Parquet: {exc}", file=file, line=number + 1 if number else None) from None


def _hub_rows(name: str, split: str, file: str) -> Iterator[tuple[int, Row | DataError]]:
    """Rows of ``datasets.load_dataset(name, split=split)``; only ever reached on an explicit request."""
    number = 0
    try:
        import datasets

        for row in datasets.load_dataset(name, split=split):
            number += 1
            yield number, row if isinstance(row, dict) else _as_row(row)
    except Exception as exc:  # network, missing dataset or split, bad cache: all reported alike
        where = f"row {number + 1} of " if number else ""
        raise DataError(f"cannot load {where}hub dataset {name!r} (split {split!r}): {exc}", file=file) from None


_CONTAINERS: dict[str, Callable[[Path, str], Iterator[tuple[int, Row | DataError]]]] = {
    "jsonl": _jsonl_rows,
    "json": _json_rows,
    "csv": _csv_rows,
    "parquet": _parquet_rows,
}


# --- rows to records ---------------------------------------------------------------------------------


def _require(row: Mapping[str, Any], *names: str) -> None:
    missing = [name for name in names if name not in row]
    if missing:
        columns = ", ".join(list(map(str, row))[:10]) + (", ..." if len(row) > 10 else "")
        raise DataError(f"missing field (the row has: {columns or 'no fields'})", field=missing[0])


def _pick(row: Mapping[str, Any], *names: str) -> Row:
    _require(row, *names)
    return {name: row[name] for name in names}


def _conversation_row(row: Mapping[str, Any]) -> Record:
    if "messages" in row or not ("prompt" in row or "completion" in row):
        return parse_record("conversation", _pick(row, "messages"))
    _require(row, "prompt", "completion")
    return Conversation.from_prompt_completion(row["prompt"], row["completion"], row.get("system"))


def _preference_row(row: Mapping[str, Any]) -> Record:
    if "prompt" not in row:
        chosen, rejected = row.get("chosen"), row.get("rejected")
        if isinstance(chosen, list) and isinstance(rejected, list):
            return Preference.from_implicit(chosen, rejected)
        if isinstance(chosen, str) and chosen.lstrip().startswith("Human:"):
            raise DataError(
                "missing field; chosen and rejected look like HH-RLHF transcripts: read them with "
                "--data-format hh-rlhf (fmt='hh-rlhf' in Python)",
                field="prompt",
            )
    names = ("prompt", "chosen", "rejected", *(name for name in ("margin", "p_chosen") if name in row))
    return parse_record("preference", _pick(row, *names))


def _unpaired_row(row: Mapping[str, Any]) -> Record:
    return parse_record("unpaired", _pick(row, "prompt", "completion", "label"))


_ROW_PARSERS: dict[str, RowParser] = {
    "conversation": _conversation_row,
    "preference": _preference_row,
    "unpaired": _unpaired_row,
}

ADAPTERS: dict[str, tuple[RecordKind, RowParser]] = {"hh-rlhf": ("preference", row_to_preference)}
"""Formats whose rows need translating: name -> (the record kind they give, row parser)."""

FORMATS = ("auto", *_CONTAINERS, "hub", *ADAPTERS)


def _row_parser(file: str, kind: str, fmt: str) -> RowParser:
    if not isinstance(kind, str) or kind not in RECORD_TYPES:
        raise DataError(f"unknown record kind {kind!r}; expected one of {', '.join(RECORD_TYPES)}", file=file)
    if fmt in ADAPTERS:
        gives, parser = ADAPTERS[fmt]
        if gives != kind:
            raise DataError(f"format {fmt!r} gives {gives} records, not {kind}", file=file)
        return parser
    return _ROW_PARSERS[kind]
