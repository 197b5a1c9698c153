"""The option groups every command shares: the base class, model, LoRA, data and training options."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tether.models.embedded import DEFAULT_MODEL

Checkpointing = bool | Literal["auto"]
"""Gradient checkpointing: on, off, or 'auto' (decided from the memory estimate, see tether.train.preflight)."""


class Options(BaseModel):
    """Base of every option group: unknown keys are errors, field docstrings are help texts."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)
    panel: ClassVar[str] = "Options"
    command: ClassVar[str] = ""
    """The command a complete config runs, as typed after `tether` (empty for an option group)."""
    reads_commands: ClassVar[tuple[str, ...]] = ()
    """Other ``command:`` values whose files this command also reads (every `tether guard` command reads a
    ``command: guard`` file)."""
    file_only: ClassVar[frozenset[str]] = frozenset()
    """Fields set only in a config file (lists of structured items), with no command-line flag."""

    @classmethod
    def panel_of(cls, name: str) -> str:
        """The help panel of a field: the option group that declares it."""
        for base in cls.__mro__:
            if issubclass(base, Options) and name in getattr(base, "__annotations__", {}):
                return base.panel
        return cls.panel


class ModelOptions(Options):
    panel: ClassVar[str] = "Model"

    model: str = DEFAULT_MODEL
    """Embedded model name (see `tether models`), a local model folder, or a hub id."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) when `model` is a hub id."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype. float32 is the right choice on CPU."""
    trust_remote_code: bool = False
    """Run model code shipped with a hub repository. Off unless you trust its authors."""


class LoraOptions(Options):
    panel: ClassVar[str] = "LoRA"

    lora: bool = False
    """Train LoRA adapters (peft) instead of all weights."""
    lora_r: int = Field(16, ge=1)
    """LoRA rank r."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling alpha (the update is scaled by alpha / r)."""
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA input."""
    lora_target_modules: str = "all-linear"
    """Modules that get adapters: 'all-linear' or a comma-separated list of module names."""


class DataOptions(Options):
    panel: ClassVar[str] = "Data"

    data: str
    """Training data: a .jsonl/.json/.csv/.parquet file, or hub:NAME for a hub dataset."""
    data_format: Literal["auto", "jsonl", "json", "csv", "parquet", "hh-rlhf", "hub"] = "auto"
    """Reader to use; 'auto' picks by file extension."""
    split: str = "train"
    """Split to read from a hub dataset."""
    max_length: int = Field(1024, ge=8)
    """Longest tokenized example. Longer ones are cut at the end; ones left with no trained token are
    dropped and counted."""
    limit: int | None = Field(None, ge=1)
    """Use only the first N records."""
    skip_invalid: bool = False
    """Skip invalid rows (counted and reported) instead of stopping at the first; real dumps such as HH-RLHF
    hold a few empty or identical answers."""


class TrainOptions(Options):
    panel: ClassVar[str] = "Training"

    out: Path
    """Output folder: checkpoints, metrics.jsonl, the resolved config and the final model (out/model)."""
    seed: int = 42
    """Seed for weights, data order and dropout."""
    lr: float = Field(1e-4, gt=0)
    """Peak learning rate (AdamW)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    batch_size: int = Field(4, ge=1)
    """Examples per micro-batch on each process."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches accumulated per optimizer step."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the data (ignored when max_steps is set)."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps."""
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    """Learning-rate schedule after warm-up."""
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    """Share of steps spent warming the learning rate up from 0."""
    max_grad_norm: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this value (None: no clipping, the norm is still logged)."""
    group_by_length: bool = True
    """Batch examples of similar length together so that little padding is trained on."""
    save_every: int | None = Field(None, ge=1)
    """Write a checkpoint every N optimizer steps (None: only at the end)."""
    keep_checkpoints: int = Field(2, ge=1)
    """How many of the newest checkpoints to keep."""
    resume: bool = False
    """Continue from the newest checkpoint in `out`."""
    overwrite: bool = False
    """Replace a finished run already in `out`."""
    log_every: int = Field(1, ge=1)
    """Log metrics every N optimizer steps."""
    report_to: list[Literal["tensorboard", "wandb"]] = Field(default_factory=list)
    """Extra metric trackers through accelerate (metrics.jsonl is always written)."""
    progress: bool = True
    """Show a progress bar."""
    gradient_checkpointing: Checkpointing = "auto"
    """Recompute each layer's activations in the backward pass: far less memory, about a third more compute.
    'auto' (the default) turns it on when the memory estimate without it exceeds --memory-budget or is at
    least twice the estimate with it (activations dominate); true/false force it."""
    memory_budget: float | None = Field(None, ge=0)
    """GB the run may use; a run estimated above it is refused before loading the model, naming settings that
    fit. Default: 90% of the memory available at start (of the GPU's on CUDA); 0 turns the check off."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast matrix products to bf16/fp16 while weights, gradients and optimizer stay fp32 (accelerate).
    bf16 is several times faster on CPUs with AVX512-BF16 or AMX and on recent GPUs; 'no' is exact fp32."""


class TrainingConfig(TrainOptions, DataOptions, LoraOptions, ModelOptions):
    """What every offline training command's config holds (sft, dpo, orpo, simpo, kto, rm train): the type
    the shared recipe steps take. Adds no field: each command's config puts its own groups first."""
