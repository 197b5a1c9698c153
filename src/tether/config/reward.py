"""Configs of the reward-model commands: rm train, rm eval, rm score."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from tether.config.options import Options, TrainingConfig


class RewardTrainOptions(Options):
    panel: ClassVar[str] = "Reward model"

    lr: float = Field(1e-5, gt=0)
    """Peak learning rate (AdamW): about 1e-5 for all weights, 1e-4 with --lora."""
    max_prompt_length: int = Field(512, ge=1)
    """Prompts longer than this keep their last tokens; responses are then cut to fit max_length."""
    center_rewards: float = Field(0.0, ge=0)
    """Coefficient c of the centring term c (r_chosen + r_rejected)^2 that keeps rewards near zero
    (Eisenstein et al. 2023; 0.01 is usual)."""


class RMTrainConfig(RewardTrainOptions, TrainingConfig):
    """Train a reward model: a scalar head on a causal LM, Bradley-Terry loss on (prompt, chosen, rejected)
    pairs, with each pair's optional `margin`."""

    command: ClassVar[str] = "rm train"


class RMEvalConfig(Options):
    """Evaluate a reward model on held-out pairs: pairwise accuracy with a 95% interval, the reward
    distribution and the correlation of reward with response length."""

    command: ClassVar[str] = "rm eval"
    model: str
    """The reward model: a `tether rm train` output folder (or its model/ folder)."""
    data: str
    """Held-out pairs in any format `tether rm train` reads."""
    data_format: Literal["auto", "jsonl", "json", "csv", "parquet", "hh-rlhf", "hub"] = "auto"
    """Reader to use; 'auto' picks by file extension."""
    split: str = "test"
    """Split to read from a hub dataset."""
    out: Path
    """Folder for eval.json (every pair's rewards) and report.html."""
    limit: int | None = Field(None, ge=1)
    """Use only the first N pairs."""
    skip: int = Field(0, ge=0)
    """Skip the first N pairs (e.g. the ones `rm train --limit N` trained on)."""
    skip_invalid: bool = False
    """Skip invalid rows (as `rm train --skip-invalid` does, so --skip counts the same pairs)."""
    max_length: int = Field(1024, ge=8)
    """Longest tokenized prompt + response."""
    max_prompt_length: int = Field(512, ge=1)
    """Prompts longer than this keep their last tokens."""
    batch_size: int = Field(16, ge=1)
    """Sequences scored per forward pass."""
    length_bias_threshold: float = Field(0.3, gt=0, le=1)
    """Flag a length bias when |Pearson r| between reward and response length is above this."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype."""
    trust_remote_code: bool = False
    """Run model code shipped with a hub repository. Off unless you trust its authors."""
    overwrite: bool = False
    """Replace an evaluation already in --out."""


class RMScoreConfig(Options):
    """Score a JSONL/CSV file of (prompt, response) rows with a reward model; writes each row plus `reward`."""

    command: ClassVar[str] = "rm score"
    model: str
    """The reward model: a `tether rm train` output folder (or its model/ folder)."""
    input: str
    """Rows with `prompt` and `response` fields (JSONL, JSON or CSV); other fields are kept."""
    output: Path
    """Where to write the rows with a `reward` field added (JSONL)."""
    prompt_field: str = "prompt"
    """Field holding the request."""
    response_field: str = "response"
    """Field holding the answer to score."""
    max_length: int = Field(1024, ge=8)
    """Longest tokenized prompt + response (longer ones keep the prompt's end and the response's start)."""
    batch_size: int = Field(16, ge=1)
    """Sequences scored per forward pass."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype."""
    trust_remote_code: bool = False
    """Run model code shipped with a hub repository. Off unless you trust its authors."""
