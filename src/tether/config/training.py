"""Configs of the offline training commands: sft, dpo, orpo, simpo, kto, and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from tether.config.files import located
from tether.config.options import ModelOptions, Options, TrainingConfig


class SFTOptions(Options):
    panel: ClassVar[str] = "SFT"

    packing: bool = False
    """Pack several short examples into one sequence (attention stays within each example)."""


class SFTConfig(SFTOptions, TrainingConfig):
    """Supervised fine-tuning with the loss on assistant tokens only."""

    command: ClassVar[str] = "sft"


class PreferenceOptions(Options):
    panel: ClassVar[str] = "Preference"

    lr: float = Field(5e-6, gt=0)
    """Peak learning rate (AdamW). Preference tuning wants small steps: about 5e-6 for all weights, 5e-5
    with --lora."""
    beta: float = Field(0.1, gt=0)
    """Inverse temperature of the implicit reward beta * log(pi / pi_ref): higher keeps closer to the
    reference."""
    max_prompt_length: int = Field(512, ge=1)
    """Prompts longer than this keep their last tokens; completions are then cut to fit max_length."""


class ReferenceOptions(Options):
    panel: ClassVar[str] = "Reference"

    ref_model: str | None = None
    """Reference model (default: the starting model; with LoRA, the base model with adapters disabled)."""
    ref_batch_size: int = Field(16, ge=1)
    """Sequences per forward pass when computing the reference log-probs (no gradients, done once)."""
    ref_cache: bool = True
    """Reuse reference log-probs cached under $TETHER_HOME/cache/reference (keyed by model and data)."""


class PairOptions(Options):
    panel: ClassVar[str] = "Preference"

    rpo_alpha: float = Field(0.0, ge=0)
    """Weight of an added SFT term, the chosen completion's NLL per token (RPO); 0 turns it off."""


class DPOOptions(Options):
    panel: ClassVar[str] = "DPO"

    loss: Literal["sigmoid", "cdpo", "robust", "hinge", "ipo", "bco"] = "sigmoid"
    """Loss: sigmoid (DPO), cdpo (label smoothing), robust (unbiased under label noise), hinge (SLiC),
    ipo (length-normalised squared loss), bco (BCO-pair with a running reward shift)."""
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    """Assumed share of flipped preference labels (cdpo, robust)."""


class DPOConfig(DPOOptions, PairOptions, PreferenceOptions, ReferenceOptions, TrainingConfig):
    """Direct preference optimisation and its variants on (prompt, chosen, rejected) pairs."""

    command: ClassVar[str] = "dpo"


class ORPOOptions(Options):
    panel: ClassVar[str] = "ORPO"

    orpo_lambda: float = Field(0.1, gt=0)
    """Weight of the odds-ratio term against the chosen NLL term."""


class ORPOConfig(ORPOOptions, PreferenceOptions, TrainingConfig):
    """ORPO: SFT on the chosen completion plus an odds-ratio preference term; no reference model."""

    command: ClassVar[str] = "orpo"


class SimPOOptions(Options):
    panel: ClassVar[str] = "SimPO"

    beta: float = Field(2.0, gt=0)
    """Scale of the length-normalised reward beta * log pi(y|x) / |y| (the paper uses 2 to 2.5)."""
    gamma: float = Field(0.5, ge=0)
    """Target reward margin between chosen and rejected."""


class SimPOConfig(SimPOOptions, PairOptions, PreferenceOptions, TrainingConfig):
    """SimPO: length-normalised log-likelihood margin with a target gap; no reference model."""

    command: ClassVar[str] = "simpo"


class KTOOptions(Options):
    panel: ClassVar[str] = "KTO"

    desirable_weight: float = Field(1.0, gt=0)
    """lambda_D, the weight of desirable examples' losses."""
    undesirable_weight: float = Field(1.0, gt=0)
    """lambda_U, the weight of undesirable examples' losses (raise it when undesirable ones are rarer)."""


class KTOConfig(KTOOptions, PreferenceOptions, ReferenceOptions, TrainingConfig):
    """KTO on unpaired (prompt, completion, label) examples; label true means desirable."""

    command: ClassVar[str] = "kto"


PREFERENCE_CONFIGS = (DPOConfig, ORPOConfig, SimPOConfig)
PreferenceConfig = DPOConfig | ORPOConfig | SimPOConfig
"""The paired preference commands, which share one recipe (tether.train.preference)."""
"""The commands that score a reference model once before training."""


class DemoConfig(ModelOptions):
    """The main job on the embedded default, as one iteration of `tether loop`: measure on held-out prompts,
    gather signal (a red-team campaign, constitution-guided revisions, keep-helping samples), DPO, measure again."""

    command: ClassVar[str] = "demo"
    out: Path = Path("runs/demo")
    """Output folder of the demo run (inputs, the loop run, results JSON, report.html)."""
    attacks: str = "direct,prefix_injection_sure"
    """Attacks of the red-team source on the training harmful prompts (`tether redteam-attacks`)."""
    cai_rounds: int = Field(1, ge=1, le=16)
    """Critique-revision rounds of the constitution source."""
    cai_prompts: int = Field(16, ge=1)
    """Harmful training prompts the constitution source critiques and revises (the first N; each costs three
    generations, so all 70 would take the demo past 10 minutes on 2 cores)."""
    critic_model: str | None = None
    """A stronger local model to write the critiques and revisions (default: the model being trained)."""
    critic_endpoint: str | None = None
    """An OpenAI-compatible endpoint to write the critiques and revisions."""
    critic_endpoint_model: str | None = None
    """Model name to request from --critic-endpoint."""
    judge: str = "classifier"
    """Refusal judge of the measurements and of red-team success (`tether judges`)."""
    samples: int = Field(3, ge=1)
    """Answers sampled per safe training prompt by the keep-helping source; each helpful one makes a pair."""
    temperature: float = Field(0.7, gt=0)
    """Sampling temperature of the keep-helping answers (the measurements use greedy decoding)."""
    steps: int = Field(26, ge=1)
    """Optimizer steps of the DPO fine-tune."""
    lr: float = Field(1e-3, gt=0)
    """Learning rate of the DPO fine-tune (LoRA)."""
    beta: float = Field(0.1, gt=0)
    """DPO beta."""
    rpo_alpha: float = Field(2.0, ge=0)
    """Weight of the chosen-answer NLL term added to the DPO loss (RPO); 0 for plain DPO."""
    lora: bool = True
    """Train LoRA adapters (the reference is then the base model with adapters disabled)."""
    batch_size: int = Field(8, ge=1)
    """Pairs per optimizer step."""
    max_new_tokens: int = Field(48, ge=1)
    """Tokens generated per answer, for the sources and for the measurements."""
    generation_backend: Literal["auto", "hf", "vllm"] = "auto"
    """Generation engine: vLLM when installed on a GPU machine ('auto'), else Hugging Face generate."""
    mixed_precision: Literal["no", "bf16"] = "no"
    """Precision of the DPO step's matrix products ('no': exact fp32, the default: bf16 autocast, 1.75x faster
    on this CPU with AVX512-BF16, rounded the demo's small LoRA update away in an earlier run; see BENCHMARKS).
    Generation and measurement always run in fp32."""
    seed: int = 0
    """Seed of sampling and training."""

    @model_validator(mode="after")
    def _critic(self) -> DemoConfig:
        if self.critic_endpoint and not self.critic_endpoint_model:
            raise located("--critic-endpoint needs --critic-endpoint-model", "critic_endpoint")
        if self.critic_endpoint and self.critic_model:
            raise located("give --critic-model or --critic-endpoint, not both", "critic_model")
        return self
