"""``tether judge refusal``: label a file of (prompt, response) rows, e.g. logs or another tool's outputs.

Every row is checked before any model loads (a missing or non-string field is a DataError naming the
file, line and field), and so is ``--output`` (a folder there is a usage error); the output is written
atomically (:mod:`tether.atomic`), so a failed run leaves no half-written file behind.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tether.atomic import atomic_open
from tether.config import JudgeRefusalConfig
from tether.data.readers import iter_rows
from tether.errors import DataError
from tether.jsonsafe import dumps
from tether.runs.folders import check_output_file


def read_judge_rows(path: str, prompt_field: str, response_field: str) -> list[dict[str, Any]]:
    rows = []
    for line, row in iter_rows(path):
        for name in (prompt_field, response_field):
            if not isinstance(row.get(name), str):
                problem = "is missing" if row.get(name) is None else f"must be a string, not {type(row[name]).__name__}"
                raise DataError(problem, file=path, line=line, field=name)
        rows.append(row)
    if not rows:
        raise DataError("no rows to judge", file=path)
    return rows


def rescore_file(config: JudgeRefusalConfig, *, judge: Any = None, batch_size: int = 256) -> Counter:
    """Write ``config.output`` (JSONL: each input row plus ``verdict``, and ``harm_verdict`` with
    ``--harm-judge``); returns the label counts (harm labels too)."""
    out = check_output_file(config.output)
    rows = read_judge_rows(config.input, config.prompt_field, config.response_field)
    from tether.judges.factory import make_harm_judge, make_judge

    if judge is None:
        judge = make_judge(config)
    harm_judge = make_harm_judge(config)
    counts: Counter = Counter()
    with atomic_open(out) as handle:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            pairs = [(r[config.prompt_field], r[config.response_field]) for r in batch]
            harm = harm_judge.judge_many(pairs) if harm_judge is not None else [None] * len(pairs)
            for row, verdict, harm_verdict in zip(batch, judge.judge_many(pairs), harm, strict=True):
                counts[verdict.label] += 1
                out_row = {**row, "verdict": verdict.to_dict()}
                if harm_verdict is not None:
                    counts[f"harm:{harm_verdict.label}"] += 1
                    out_row["harm_verdict"] = harm_verdict.to_dict()
                handle.write(dumps(out_row) + "\n")
    return counts
