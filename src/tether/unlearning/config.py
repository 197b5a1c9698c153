"""Config of `tether unlearn-eval`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from tether.config import ModelOptions


class UnlearnEvalConfig(ModelOptions):
    """Measure what a model knows of a fact set: cloze accuracy per split, membership AUC, and relearning."""

    command: ClassVar[str] = "unlearn-eval"
    panel: ClassVar[str] = "Unlearning evaluation"

    facts: str = "team"
    """Fact file (rows: id, entity, split forget/retain/holdout, question, answer, paraphrase, choices,
    label), or 'team' for the team's 192 invented facts (tether/data/unlearning/facts.md)."""
    out: Path
    """Run folder: eval.json, report.html, config.yaml (and relearn/ with the attack's training runs)."""
    k: float = Field(0.2, gt=0, le=1)
    """Share of lowest-probability answer tokens the min-k% membership score averages (Shi et al. use 0.2)."""
    batch_size: int = Field(16, ge=1)
    """Sequences per forward pass."""
    relearn_steps: list[int] = Field(default_factory=lambda: [0, 5, 10, 20])
    """Relearning attack: fine-tune on half of the forget facts (every other fact of each entity) and measure
    the other half after each of these optimizer steps; an empty list (or only 0) skips the attack."""
    relearn_lr: float = Field(2e-5, gt=0)
    """Learning rate of the relearning fine-tune (all weights, AdamW, constant)."""
    relearn_batch_size: int = Field(4, ge=1)
    """Examples per relearning step."""
    seed: int = 42
    """Seed of the relearning fine-tune."""
    overwrite: bool = False
    """Replace a run already in --out."""
    progress: bool = True
    """Show progress."""

    @field_validator("relearn_steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        if any(step < 0 for step in value):
            raise ValueError("relearning steps must be 0 or more")
        return sorted(set(value))
