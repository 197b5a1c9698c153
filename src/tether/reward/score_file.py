"""``tether rm score``: add a ``reward`` field to every (prompt, response) row of a file.

Rows are checked before the model loads (file, line and field in the error); the output is written to a
temporary file and renamed, so a failed run leaves no half-written file.
"""

from __future__ import annotations

import json
from pathlib import Path

from tether.config import RMScoreConfig
from tether.judges.rescore import read_judge_rows
from tether.reward.scoring import RewardModelScorer


def score_file(config: RMScoreConfig) -> list[float]:
    rows = read_judge_rows(config.input, config.prompt_field, config.response_field)
    scorer = RewardModelScorer.load(
        config.model,
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
        max_length=config.max_length,
        batch_size=config.batch_size,
    )
    rewards = scorer.score([r[config.prompt_field] for r in rows], [r[config.response_field] for r in rows])
    out = Path(config.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            for row, reward in zip(rows, rewards, strict=True):
                handle.write(json.dumps({**row, "reward": reward}, ensure_ascii=False) + "\n")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return rewards
