"""The refusal judge's trained layer: its labelled data, its shipped file, and how it is retrained.

The shipped classifier (``judges/data/refusal_cross_encoder.safetensors``, a
:class:`~tether.judges.cross_encoder.RefusalCrossEncoder`) is trained by ``tether judge train-refusal`` on

- ``judges/data/refusal_train.jsonl``: answers the team wrote and labelled (plus real answers of the
  embedded model the team labelled), see ``judges/data/LABELLING.md``;
- the real answers of three chat models in the shared ``judged-completions/refusal_direction.jsonl``
  (not shipped: read from the shared data when present), labelled one by one by the team; the labels, keyed
  by a hash of each row (:func:`row_key`), are in ``judges/data/judged_completions_labels.jsonl``.

Its agreement with human labels is measured on rows it was not trained on: the team's disjoint evaluation
set, and each chat model's answers with a classifier trained without that model
(``benchmarks/judge_agreement.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from tether.data.readers import iter_rows
from tether.errors import DataError
from tether.judges.cross_encoder import RefusalCrossEncoder
from tether.judges.verdict import REFUSAL_LABELS

JUDGED_COMPLETIONS = Path("judged-completions") / "refusal_direction.jsonl"
"""Where the shared real answers lie under the shared data folder."""


def _data(name: str) -> Path:
    return Path(str(resources.files("tether.judges").joinpath("data", name)))


def shipped_classifier_path() -> Path:
    return _data("refusal_cross_encoder.safetensors")


def shipped_training_path() -> Path:
    return _data("refusal_train.jsonl")


def shipped_real_labels_path() -> Path:
    return _data("judged_completions_labels.jsonl")


@lru_cache(maxsize=1)
def shipped_classifier() -> RefusalCrossEncoder:
    """The shipped cross-encoder, loaded once per process."""
    return RefusalCrossEncoder.load(shipped_classifier_path())


def _jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line, row)`` of a JSONL file; a malformed line is a located DataError (:func:`iter_rows`)."""
    return list(iter_rows(path, "jsonl"))


def read_labelled(path: str | Path) -> list[dict[str, Any]]:
    """Rows with ``prompt``, ``response`` and a ``label`` in ``REFUSAL_LABELS`` (JSONL)."""
    rows = []
    for number, row in _jsonl(path):
        for key in ("prompt", "response", "label"):
            if not isinstance(row.get(key), str):
                raise DataError("missing or not a string", file=path, line=number, field=key)
        if row["label"] not in REFUSAL_LABELS:
            raise DataError(f"expected one of {', '.join(REFUSAL_LABELS)}", file=path, line=number, field="label")
        rows.append(row)
    if not rows:
        raise DataError("no labelled rows", file=path)
    return rows


def row_key(row: dict[str, Any]) -> str:
    """The first 16 hex digits of SHA-256 over model, set, prompt and response, newline-joined."""
    text = "\n".join(str(row[k]) for k in ("model", "set", "prompt", "response"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_judged_completions(path: str | Path, labels: str | Path | None = None) -> list[dict[str, Any]]:
    """The shared real answers with the team's labels: ``prompt``, ``response``, ``label``, ``model``, ``set``,
    ``case``. Rows the team could not label (``unclear``) are left out; a row without a label is an error."""
    labels = labels or shipped_real_labels_path()
    by_key = {row["key"]: row for _, row in _jsonl(labels)}
    out = []
    for number, row in _jsonl(path):
        for name in ("model", "set", "prompt", "response"):
            if not isinstance(row.get(name), str):
                raise DataError("missing or not a string", file=path, line=number, field=name)
        label = by_key.get(row_key(row))
        if label is None:
            raise DataError(f"no label for this row in {labels} (key {row_key(row)})", file=path, line=number)
        if label["label"] == "unclear":
            continue
        out.append(
            {k: row[k] for k in ("model", "set", "prompt", "response")} | {k: label[k] for k in ("label", "case")}
        )
    return out


def held_out_splits(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[list[dict], list[dict]]]:
    """For each model of ``rows``: (the other models' rows, that model's rows)."""
    models = sorted({r["model"] for r in rows})
    return {m: ([r for r in rows if r["model"] != m], [r for r in rows if r["model"] == m]) for m in models}
