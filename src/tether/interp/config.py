"""The configs of `tether interp capture` (activations of many texts to disk), `tether interp lens` (logit lens)
and `tether interp patch` (activation patching on a clean/corrupted prompt pair)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from tether.config import ModelOptions, located

DTYPE = Literal["float32", "float16", "bfloat16"]


class InterpCaptureConfig(ModelOptions):
    """Run the model over texts and write the activations at the chosen sites to disk, in safetensors chunks of
    whole examples within a memory budget (a capture larger than memory works; --resume continues one)."""

    command: ClassVar[str] = "interp capture"

    data: str
    """Texts: JSONL/JSON/CSV/Parquet rows with `text` (read as is), `prompt` or `instruction` (a user turn), or a
    .txt file with one text per line."""
    field: str | None = None
    """Column holding the text (default: the first of text, prompt, instruction present)."""
    limit: int | None = Field(None, ge=1)
    """Use only the first N texts (a later run with a larger limit and --resume adds the rest)."""
    chat: bool = True
    """Wrap prompts and instructions in the tokenizer's chat template, assistant turn opened (raw `text` rows
    are always read as they are)."""
    sites: str = "resid_post.*"
    """Comma-separated sites KIND.LAYER, KIND one of resid_pre, resid_post, attn_out, mlp_out; KIND.* is every
    layer, a negative layer counts from the top (e.g. resid_post.*,mlp_out.-1)."""
    positions: Literal["all", "last"] = "all"
    """Token positions stored: every real token, or only each text's last (padding is never stored)."""
    skip_first: int = Field(0, ge=0)
    """Leave out each text's first N tokens. 1 drops the attention sink (in SmolLM2's chat template the first
    token's residual norm is about 100 times the others'), which an SAE should not spend latents on; `tether
    sae eval` then splices its reconstruction only after those positions."""
    batch_size: int = Field(8, ge=1)
    """Texts per forward pass."""
    max_length: int = Field(512, ge=1)
    """Longest text in tokens; longer ones keep their first max_length tokens (counted in summary.json)."""
    memory_budget_mb: float = Field(256.0, gt=0)
    """MB of activations buffered before a chunk is written (RAM use is this plus one batch's activations)."""
    activation_dtype: DTYPE = "float32"
    """Dtype of the stored activations (float16/bfloat16 halve the disk space)."""
    out: Path
    """Run folder: activations/ (index.json and chunk-NNNNNN.safetensors), summary.json, config.yaml."""
    resume: bool = False
    """Continue the capture in --out after its last written chunk (same model, texts and settings)."""
    overwrite: bool = False
    """Replace a capture already in --out."""
    progress: bool = True
    """Show progress (a bar on a terminal, a line every tenth of the way in a log file)."""


class InterpLensConfig(ModelOptions):
    """Logit lens (nostalgebraist 2020): read every layer's residual stream through the final norm and the
    unembedding, and show per layer and position the top token, the probability of the model's own final
    prediction and KL(final || layer)."""

    command: ClassVar[str] = "interp lens"

    prompt: str | None = None
    """The text to inspect (or give --data)."""
    data: str | None = None
    """Texts to inspect, one lens each (rows as for `tether interp capture`)."""
    field: str | None = None
    """Column of --data holding the text (default: the first of text, prompt, instruction present)."""
    limit: int = Field(8, ge=1)
    """Use only the first N texts of --data."""
    chat: bool = False
    """Wrap the prompt (and --data prompts/instructions) in the tokenizer's chat template."""
    max_length: int = Field(128, ge=1)
    """Longest text in tokens (longer ones keep their first max_length tokens)."""
    out: Path
    """Run folder: lens.json, report.html (heatmaps of layers x positions), config.yaml."""
    overwrite: bool = False
    """Replace a lens run already in --out."""
    progress: bool = True
    """Show progress over the texts."""

    @model_validator(mode="after")
    def _one_source(self) -> InterpLensConfig:
        if (self.prompt is None) == (self.data is None):
            raise located("give --prompt or --data (one of them)", "prompt")
        if self.prompt is not None and not self.prompt.strip():
            raise located("--prompt is empty", "prompt")
        return self


class InterpPatchConfig(ModelOptions):
    """Activation patching (Meng et al. 2022): run the corrupted prompt with one layer's activation at one
    position taken from the clean run, for every layer and position, and report how much of the clean logit
    difference logit(answer) - logit(wrong answer) it restores (Heimersheim and Nanda 2024)."""

    command: ClassVar[str] = "interp patch"

    clean: str
    """The clean prompt (the model should answer --answer)."""
    corrupted: str
    """The corrupted prompt: the same number of tokens as --clean, differing where the answer is decided."""
    answer: str
    """The clean answer, one token (mind the leading space: " Paris")."""
    wrong_answer: str
    """The corrupted prompt's answer, one token (" Rome")."""
    chat: bool = False
    """Wrap both prompts in the tokenizer's chat template, assistant turn opened."""
    sites: str = "resid_pre"
    """Comma-separated kinds of site patched at every layer: resid_pre, resid_post, attn_out, mlp_out."""
    batch_size: int = Field(16, ge=1)
    """Patched runs per forward pass."""
    out: Path
    """Run folder: patching.json, report.html (a heatmap of layers x positions per kind), config.yaml."""
    overwrite: bool = False
    """Replace a patching run already in --out."""
    progress: bool = True
    """Show progress over the patched runs."""

    @model_validator(mode="after")
    def _answers(self) -> InterpPatchConfig:
        if self.answer == self.wrong_answer:
            raise located("--answer and --wrong-answer are the same; the metric is their logit difference", "answer")
        return self
