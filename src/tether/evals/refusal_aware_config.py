"""Config of `tether refusal-aware-data`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from tether.config import ModelOptions


class RefusalAwareDataConfig(ModelOptions):
    """R-Tuning data: the questions a model answers right keep its answer, the others teach "I am not sure."."""

    command: ClassVar[str] = "refusal-aware-data"
    panel: ClassVar[str] = "Refusal-aware data"

    suite: Literal["qa", "facts-qa"] = "qa"
    """How --data is read: qa (question + answers) or facts-qa (a fact file; 'team' for the team's facts)."""
    data: str
    """The training questions (never the ones you will measure on)."""
    categories: list[str] = Field(default_factory=list)
    """Keep only questions of these categories (facts-qa: splits, e.g. retain); repeat the flag. Empty: all."""
    output: Path
    """The JSONL file to write (prompt/completion rows for `tether sft`, or prompt/chosen/rejected for `dpo`)."""
    format: Literal["sft", "dpo"] = "sft"
    """sft conversations, or dpo pairs (right answer over abstention, abstention over wrong answer)."""
    max_new_tokens: int = Field(32, ge=1)
    """Tokens per greedy answer."""
    batch_size: int = Field(16, ge=1)
    """Questions per generation batch."""
    overwrite: bool = False
    """Replace --output if it exists."""
    progress: bool = True
    """Show progress."""
