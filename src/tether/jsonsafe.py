"""JSON that every parser reads: Python's ``json`` writes ``NaN`` and ``Infinity``, which are not JSON.

tether writes every summary, metrics line and sample record through :func:`dumps`, which turns each
non-finite float into ``null`` (a rate with no scored sample, a reward of a step where nothing was scored)
and refuses anything else that is not JSON. Readers that compute with such figures map ``null`` back to
NaN with :func:`nan_for_null`.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (at any depth of dicts, lists and tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of ``value`` (non-ASCII kept as is; non-finite floats as null)."""
    return json.dumps(finite(value), indent=indent, ensure_ascii=False, allow_nan=False)


def nan_for_null(value: Any) -> Any:
    """The inverse for numeric blocks read back: None (at any depth) becomes NaN."""
    if value is None:
        return math.nan
    if isinstance(value, dict):
        return {k: nan_for_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_for_null(v) for v in value]
    return value
