"""The configs of `tether interp probe`, `tether interp refusal-direction` and `tether interp steer`.

Each runs with its module's ``run_*`` function: :func:`tether.interp.probes.run_probe`,
:func:`tether.interp.refusal_direction.run_refusal_direction`, :func:`tether.interp.steering.run_steer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from tether.config import ModelOptions, Options, located


class RunFolderOptions(Options):
    panel: ClassVar[str] = "Run"

    out: Path
    """Run folder (config.yaml, each stage's outputs, report.html)."""
    resume: bool = False
    """Continue the run in --out: every finished stage's output is reused."""
    overwrite: bool = False
    """Replace a run already in --out."""
    batch_size: int = Field(16, ge=1)
    """Prompts per forward pass."""
    progress: bool = True
    """Show progress (a bar on a terminal, a line every tenth of the way in a log file)."""
    seed: int = 0
    """Seed of the subsamples and of the bootstrap."""


class InstructionSets(Options):
    panel: ClassVar[str] = "Data"

    harmful_train: str
    """Harmful instructions to fit on (JSON/JSONL/CSV/Parquet rows with `instruction`, `prompt` or `text`)."""
    harmless_train: str
    """Harmless instructions to fit on."""
    harmful_val: str
    """Held-out harmful instructions."""
    harmless_val: str
    """Held-out harmless instructions."""


class InterpProbeConfig(RunFolderOptions, InstructionSets, ModelOptions):
    """Linear probes (logistic regression, difference of means) on each layer's residual stream for harmful
    versus harmless instructions; AUROC and recall at 1% FPR per layer; the best probe exported for the guard."""

    command: ClassVar[str] = "interp probe"

    harmful_train_limit: int | None = Field(None, ge=2)
    """Use a random subsample of this many harmful training instructions (default: all)."""
    harmless_train_limit: int | None = Field(1000, ge=2)
    """Use a random subsample of this many harmless training instructions."""
    harmful_val_limit: int | None = Field(None, ge=2)
    """Use a random subsample of this many held-out harmful instructions (default: all)."""
    harmless_val_limit: int | None = Field(1000, ge=2)
    """Use a random subsample of this many held-out harmless instructions."""
    site: Literal["resid_post", "resid_pre"] = "resid_post"
    """Residual stream read at every layer."""
    position: Literal["last", "post_instruction_mean"] = "last"
    """Feature of a prompt: the residual at its last token, or its mean over the chat template's
    post-instruction tokens."""
    fpr: float = Field(0.01, gt=0, lt=0.5)
    """False-positive rate at which recall is reported and the exported threshold is set."""


class InterpRefusalDirectionConfig(RunFolderOptions, InstructionSets, ModelOptions):
    """The refusal direction (Arditi et al. 2024): difference-in-means candidates over layers and
    post-instruction positions, selected by refusal-score and KL criteria; directional ablation, activation
    addition and a weight-orthogonalised checkpoint; refusal rates judged by the refusal judge."""

    command: ClassVar[str] = "interp refusal-direction"

    train_limit: int = Field(128, ge=2)
    """Harmful and harmless training instructions each (random subsample) the candidates are means over."""
    selection_limit: int = Field(32, ge=1)
    """Held-out harmful and harmless instructions each that score the candidates."""
    eval_limit: int = Field(64, ge=1)
    """Held-out harmful and harmless instructions each whose answers are generated and judged, drawn from those
    not used for selection (fewer when the held-out file runs out)."""
    positions: int | None = Field(None, ge=1)
    """Candidates at the last N post-instruction positions (default: all of them)."""
    layer_stride: int = Field(1, ge=1)
    """Candidates at every N-th layer (1: all)."""
    max_layer_fraction: float = Field(0.8, gt=0, le=1)
    """Only layers below this fraction of the depth are candidates (Arditi et al.: 0.8)."""
    kl_threshold: float = Field(0.1, gt=0)
    """A candidate passes when the KL divergence of harmless next-token distributions under ablation is below it."""
    induce_threshold: float = 0.0
    """A candidate passes when the harmless refusal score under activation addition is above it."""
    refusal_tokens: list[str] = Field(default_factory=lambda: ["I", "As"])
    """Strings whose first token opens a refusal; refusal score = log-odds of their total probability at the
    first answer position."""
    filter_train: bool = True
    """Keep only training instructions the model treats as expected (harmful: refusal score > 0, harmless: < 0),
    as Arditi et al. do, when at least two of each class remain."""
    max_new_tokens: int = Field(64, ge=1)
    """Tokens of each judged answer."""
    export_model: bool = True
    """Write the weight-orthogonalised model (a plain Hugging Face checkpoint) to out/model."""


class InterpSteerConfig(RunFolderOptions, ModelOptions):
    """Steer generation along a direction (a refusal-direction run's direction.safetensors or an SAE feature):
    add alpha * r or clamp the projection onto r at a site, over a sweep of strengths; refusal rate and loss."""

    command: ClassVar[str] = "interp steer"

    direction: str
    """direction.safetensors (from `tether interp refusal-direction`), or an SAE folder (cfg.json +
    sae_weights.safetensors, SAELens format) with --feature."""
    feature: int | None = Field(None, ge=0)
    """The SAE feature whose decoder row W_dec[feature] is the direction."""
    site: str | None = None
    """Where to steer (e.g. resid_pre.12); default: the direction file's own site."""
    mode: Literal["add", "clamp"] = "add"
    """add: x <- x + strength * r; clamp: x <- x + (strength - x . r^) r^ (the projection set to strength)."""
    strengths: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0, 1.5, 2.0])
    """Strengths of the sweep (alpha for add, the clamped value for clamp)."""
    normalize: bool = False
    """add: use the unit direction r^ instead of r (then strength is in residual-norm units)."""
    prompts: str
    """Instructions to answer (rows with `instruction`, `prompt` or `text`); their refusal rate is measured."""
    prompts_limit: int | None = Field(64, ge=1)
    """Use the first N prompts."""
    loss_prompts: str | None = None
    """Harmless instructions whose unsteered answers the loss is measured on (default: --prompts)."""
    loss_limit: int | None = Field(32, ge=1)
    """Use the first N loss prompts."""
    max_new_tokens: int = Field(64, ge=1)
    """Tokens of each answer."""

    @model_validator(mode="after")
    def _feature(self) -> InterpSteerConfig:
        if Path(self.direction).is_dir() and self.feature is None:
            raise located("--direction is an SAE folder: pass --feature K (the decoder row to steer along)", "feature")
        if self.mode == "clamp" and self.normalize:
            raise located("--normalize applies to --mode add (clamp always uses the unit direction)", "normalize")
        return self
