"""``tether rm score``: add a ``reward`` field to every (prompt, response) row of a file.

Rows and ``--output`` are checked before the model loads (file, line and field in the error; a folder
where the file should be is a usage error); the output is written atomically (:mod:`tether.atomic`), so
a failed run leaves no half-written file.
"""

from __future__ import annotations

from tether.atomic import atomic_write_jsonl
from tether.config import RMScoreConfig
from tether.judges.rescore import read_judge_rows
from tether.reward.scoring import RewardModelScorer
from tether.runs.folders import check_output_file


def score_file(config: RMScoreConfig) -> list[float]:
    out = check_output_file(config.output)
    rows = read_judge_rows(config.input, config.prompt_field, config.response_field)
    scorer = RewardModelScorer.load(
        config.model,
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
        max_length=config.max_length,
        batch_size=config.batch_size,
    )
    rewards = scorer.score([r[config.prompt_field] for r in rows], [r[config.response_field] for r in rows])
    atomic_write_jsonl(out, ({**row, "reward": reward} for row, reward in zip(rows, rewards, strict=True)))
    return rewards
