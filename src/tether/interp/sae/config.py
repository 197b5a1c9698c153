"""The configs of `tether sae train` (an SAE on captured activations), `tether sae eval` (its reconstruction
and CE-loss-recovered metrics) and `tether sae cards` (top-activating examples per feature, as HTML)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from tether.config import ModelOptions, Options, located


class SaeTrainConfig(Options):
    """Train a sparse autoencoder (ReLU+L1, TopK, BatchTopK or JumpReLU) on activations captured with
    `tether interp capture`, reading the store chunk by chunk through a shuffle buffer; resumable."""

    command: ClassVar[str] = "sae train"
    panel: ClassVar[str] = "SAE"

    activations: Path
    """Activation store folder (index.json and safetensors chunks, from `tether interp capture`)."""
    site: str | None = None
    """Site to train on (e.g. resid_post.15); default: the store's only site."""
    out: Path
    """Run folder: config.yaml, metrics.jsonl, checkpoints/, sae/ (SAELens format: cfg.json and
    sae_weights.safetensors), summary.json."""
    architecture: Literal["relu", "topk", "batchtopk", "jumprelu"] = "topk"
    """relu (ReLU + L1, Bricken et al. 2023 / Anthropic April 2024), topk (Gao et al. 2024), batchtopk
    (Bussmann et al. 2024) or jumprelu (Rajamanoharan et al. 2024)."""
    d_sae: int | None = Field(None, ge=1)
    """Latents; default: --expansion times the site's width."""
    expansion: int = Field(8, ge=1)
    """Latents per input dimension when --d-sae is not given."""
    k: int = Field(32, ge=1)
    """Active latents per token (topk), or on average per token over a batch (batchtopk)."""
    l1_coefficient: float = Field(5.0, ge=0)
    """lambda of the relu SAE's L1 penalty sum_i f_i ||W_dec,i|| (on inputs scaled to E||x|| = sqrt(d_in))."""
    l0_coefficient: float = Field(0.1, ge=0)
    """lambda of the jumprelu SAE's L0 penalty sum_i H(z_i - theta_i)."""
    sparsity_warmup: float = Field(0.05, ge=0, le=1)
    """Share of the steps over which the L1/L0 coefficient rises linearly from 0."""
    aux_coefficient: float = Field(1 / 32, ge=0)
    """alpha of the AuxK loss that revives dead latents (topk, batchtopk; Gao et al. use 1/32)."""
    aux_k: int | None = Field(None, ge=1)
    """Dead latents the AuxK loss uses per token; default: half the input width."""
    dead_window: int = Field(1_000_000, ge=1)
    """A latent inactive over this many training tokens counts as dead (for AuxK)."""
    threshold: float = Field(0.01, ge=0)
    """Initial jumprelu threshold theta (SAELens's default; the paper's 0.001 suits far longer runs)."""
    bandwidth: float = Field(0.05, gt=0)
    """Bandwidth eps of the jumprelu straight-through estimators (SAELens's default; the paper uses 0.001)."""
    normalize: bool = True
    """Scale inputs by one constant so that E||x|| = sqrt(d_in) during training (estimated on the first
    batches, folded into the saved weights)."""
    lr: float = Field(3e-4, gt=0)
    """Adam learning rate."""
    lr_warmup: float = Field(0.01, ge=0, le=1)
    """Share of the steps of linear learning-rate warm-up."""
    lr_decay: float = Field(0.2, ge=0, le=1)
    """Final share of the steps over which the learning rate decays linearly to 0."""
    max_grad_norm: float = Field(1.0, gt=0)
    """Gradient norm clipping."""
    batch_size: int = Field(4096, ge=1)
    """Tokens per step."""
    tokens: int = Field(4_000_000, ge=1)
    """Training tokens (steps = tokens // batch size; a store shorter than this is read again, reshuffled)."""
    buffer_tokens: int = Field(65_536, ge=1)
    """Tokens in the shuffle buffer (its memory is this times the width times 4 bytes)."""
    seed: int = 0
    """Seed of the initialisation and of the batch order."""
    log_every: int = Field(50, ge=1)
    """Steps between lines of metrics.jsonl."""
    checkpoint_every: int = Field(500, ge=1)
    """Steps between checkpoints (a stopped run resumes from the last one)."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint."""
    overwrite: bool = False
    """Replace a run already in --out."""
    progress: bool = True
    """Show progress (a bar on a terminal, a line every tenth of the way in a log file)."""

    @model_validator(mode="after")
    def _check(self) -> SaeTrainConfig:
        if self.architecture in ("topk", "batchtopk") and self.d_sae is not None and self.k > self.d_sae:
            raise located(f"k ({self.k}) exceeds d_sae ({self.d_sae})", "k")
        if self.tokens < self.batch_size:
            raise located(f"fewer tokens ({self.tokens}) than one batch ({self.batch_size})", "tokens")
        return self


class SaeEvalConfig(ModelOptions):
    """Measure an SAE on held-out activations: L0, explained variance, MSE, dead and dense latents; with
    --data, also the cross-entropy loss recovered when its reconstruction replaces the site's activation."""

    command: ClassVar[str] = "sae eval"

    sae: Path
    """SAE folder (SAELens format: cfg.json and sae_weights.safetensors), or a `tether sae train` run."""
    activations: Path
    """Activation store to measure on (held out from training)."""
    site: str | None = None
    """Site of the store; default: the SAE's (cfg.json metadata), else the store's only site."""
    model: str | None = None  # type: ignore[assignment]
    """Model for the CE loss recovered (default: the model recorded with the SAE or the store)."""
    tokens: int | None = Field(1_000_000, ge=1)
    """Measure on at most this many tokens of the store."""
    batch_size: int = Field(4096, ge=1)
    """Tokens per SAE forward pass."""
    data: str | None = None
    """Texts for the CE loss recovered: rows with `text`, `prompt` or `instruction` (or a .txt file)."""
    limit: int = Field(64, ge=1)
    """Texts of --data to use."""
    max_length: int = Field(128, ge=2)
    """Tokens per text (longer texts are cut)."""
    text_batch_size: int = Field(8, ge=1)
    """Texts per model forward pass."""
    skip_first: int | None = Field(None, ge=0)
    """Leave each text's first N positions unspliced (default: the --skip-first of the capture in --activations,
    the positions the SAE never saw)."""
    output: Path | None = None
    """Write the metrics here as JSON."""
    progress: bool = True
    """Show progress."""


class SaeCardsConfig(Options):
    """Feature cards: for each of some SAE latents, the held-out tokens that activate it most, in their
    context with the token highlighted, as one self-contained HTML page."""

    command: ClassVar[str] = "sae cards"

    sae: Path
    """SAE folder (SAELens format), or a `tether sae train` run."""
    activations: Path
    """Activation store with the token columns (example, position, token_id)."""
    site: str | None = None
    """Site of the store; default: the SAE's, else the store's only site."""
    output: Path = Path("cards.html")
    """HTML page to write (a JSON file with the same examples is written beside it)."""
    tokenizer: str | None = None
    """Tokenizer to decode tokens with (default: the model recorded with the store or the SAE)."""
    features: str | None = None
    """Comma-separated latent indices (default: the first --count latents active on the scanned tokens)."""
    count: int = Field(32, ge=1)
    """Latents to show when --features is not given."""
    top: int = Field(10, ge=1)
    """Examples per latent."""
    context: int = Field(8, ge=0)
    """Tokens shown on each side of the activating token."""
    tokens: int | None = Field(1_000_000, ge=1)
    """Scan at most this many tokens of the store."""
    batch_size: int = Field(4096, ge=1)
    """Tokens per SAE forward pass."""
    progress: bool = True
    """Show progress."""
