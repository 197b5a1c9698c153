"""Configs of online RL: ppo, rloo, grpo (shared rollout, update and training options)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from tether.config.options import Checkpointing, LoraOptions, ModelOptions, Options


class RolloutOptions(Options):
    panel: ClassVar[str] = "Rollouts"

    prompts: str
    """Prompts: JSONL/JSON/CSV rows with `prompt` (a string or messages) and an optional `tag` that routes
    rewards; preference files work too."""
    prompts_format: Literal["auto", "jsonl", "json", "csv", "parquet", "hh-rlhf", "hub"] = "auto"
    """Reader for --prompts (hh-rlhf: the conversation before the last answer)."""
    prompts_limit: int | None = Field(None, ge=1)
    """Use only the first N training prompts."""
    eval_prompts: str | None = None
    """Held-out prompts (same formats): mean reward and KL measured before training, every --eval-every
    steps and at the end."""
    eval_skip: int = Field(0, ge=0)
    """Skip the first N held-out prompts (e.g. when --eval-prompts is the training file and --prompts-limit
    took its first N)."""
    eval_limit: int = Field(64, ge=1)
    """Use at most this many held-out prompts."""
    eval_every: int = Field(5, ge=1)
    """Measure the held-out prompts every N steps."""
    reward: list[str] = Field(default_factory=list)
    """Reward components, summed: rm:PATH, judge:refuse, judge:comply, py:FILE_OR_MODULE:FUNCTION, each
    optionally TAG= (only prompts with that tag) and WEIGHT* (e.g. harmful=judge:refuse, 0.1*py:r.py:f)."""
    steps: int = Field(20, ge=1)
    """RL steps (each: one rollout, then its updates)."""
    prompts_per_step: int = Field(8, ge=1)
    """Prompts sampled per rollout on each process."""
    max_new_tokens: int = Field(64, ge=1)
    """Longest response; a response without EOS by then is truncated (see --missing-eos-penalty)."""
    max_prompt_length: int = Field(256, ge=1)
    """Prompts longer than this keep their last tokens."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature of the rollouts; log-probs use the same temperature."""
    missing_eos_penalty: float | None = Field(None, ge=0)
    """Subtract this from the reward of a truncated response (no EOS within --max-new-tokens)."""
    rollout_batch_size: int = Field(64, ge=1)
    """Sequences per generation batch and per no-gradient scoring pass."""


class PolicyUpdateOptions(Options):
    panel: ClassVar[str] = "Policy update"

    epochs_per_step: int = Field(1, ge=1)
    """Passes over each rollout (PPO epochs)."""
    minibatch_size: int = Field(16, ge=1)
    """Samples per optimizer step within a pass."""
    clip: float = Field(0.2, gt=0)
    """Clip range eps of the policy ratio."""
    kl_coef: float = Field(0.05, ge=0)
    """Coefficient beta of the KL penalty to the reference (the starting model)."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k1"
    """Per-token KL estimator (Schulman 2020): k1 = log-ratio, k3 = ratio - 1 - log ratio."""
    kl_target: float | None = Field(None, gt=0)
    """Adapt beta toward this KL per response (Ziegler et al. 2019); None keeps beta fixed."""
    kl_horizon: int = Field(10000, ge=1)
    """Horizon of the adaptive KL controller (samples)."""
    kl_stop: float | None = Field(None, gt=0)
    """Stop early (keeping the model) when the mean KL per response exceeds this bound."""
    whiten_advantages: bool = True
    """Normalise advantages to mean 0 and standard deviation 1 over each rollout."""


class RLTrainOptions(Options):
    panel: ClassVar[str] = "Training"

    out: Path
    """Output folder: checkpoints, metrics.jsonl, rollouts.jsonl, the resolved config, report.html and the
    final policy (out/model)."""
    seed: int = 42
    """Seed of sampling, data order and weights."""
    lr: float = Field(1e-5, gt=0)
    """Learning rate of the policy (AdamW): about 1e-5 for all weights, 1e-4 with --lora."""
    max_grad_norm: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this value."""
    save_every: int | None = Field(None, ge=1)
    """Write a checkpoint every N steps (always at the end)."""
    keep_checkpoints: int = Field(2, ge=1)
    """How many of the newest checkpoints to keep."""
    resume: bool = False
    """Continue from the newest checkpoint in `out`."""
    overwrite: bool = False
    """Replace a finished run already in `out`."""
    progress: bool = True
    """Show a progress bar."""
    gradient_checkpointing: Checkpointing = "auto"
    """Recompute each layer's activations in the update: far less memory, about a third more compute. 'auto'
    (the default) turns it on when the memory estimate without it exceeds --memory-budget or is at least
    twice the estimate with it; true/false force it."""
    memory_budget: float | None = Field(None, ge=0)
    """GB the run may use; a run estimated above it is refused before loading the model, naming settings that
    fit. Default: 90% of the memory available at start (of the GPU's on CUDA); 0 turns the check off."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast matrix products in the updates and scoring passes to bf16/fp16 (weights stay fp32)."""
    generation_backend: Literal["auto", "hf", "vllm"] = "auto"
    """Rollout engine: vLLM when installed on a CUDA machine ('auto'; the policy's weights are loaded into
    it in place after every update), else Hugging Face generate."""
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, lt=1)
    """Share of GPU memory vLLM may take for weights and KV cache (training needs the rest)."""


class PPOOptions(Options):
    panel: ClassVar[str] = "PPO"

    samples_per_prompt: int = Field(1, ge=1)
    """Responses sampled per prompt."""
    epochs_per_step: int = Field(2, ge=1)
    """Passes over each rollout (PPO epochs)."""
    value_model: str | None = None
    """Starting weights of the value model (a scalar head is added): default the policy's; a reward
    model folder is the InstructGPT choice."""
    value_lr: float | None = Field(None, gt=0)
    """Learning rate of the value model (default: --lr)."""
    vf_coef: float = Field(0.1, ge=0)
    """Weight of the value loss."""
    value_clip: float = Field(0.2, gt=0)
    """Clip range of the value update around the rollout's values."""
    gamma: float = Field(1.0, gt=0, le=1)
    """Discount of GAE."""
    lam: float = Field(0.95, ge=0, le=1)
    """lambda of GAE."""


class RLOOOptions(Options):
    panel: ClassVar[str] = "RLOO"

    samples_per_prompt: int = Field(4, ge=2)
    """k responses per prompt; each one's baseline is the mean reward of the other k - 1."""
    whiten_advantages: bool = False
    """Normalise advantages over each rollout (the leave-one-out baseline already centres them)."""


class GRPOOptions(Options):
    panel: ClassVar[str] = "GRPO"

    samples_per_prompt: int = Field(4, ge=2)
    """Group size G: responses per prompt, whose rewards are normalised within the group."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """Per-token KL estimator; GRPO adds beta * KL to the loss (not to the reward)."""
    kl_coef: float = Field(0.04, ge=0)
    """Coefficient beta of the KL term in the loss."""
    scale_rewards: bool = True
    """Divide by the group's standard deviation (False: only centre, as Dr. GRPO)."""
    whiten_advantages: bool = False
    """Normalise advantages again over each rollout (the group normalisation usually suffices)."""


class RLOptions(RLTrainOptions, PolicyUpdateOptions, RolloutOptions, LoraOptions, ModelOptions):
    """What PPO, RLOO and GRPO share: training, policy update, rollout, LoRA and model options."""


class PPOConfig(PPOOptions, RLOptions):
    """PPO from a reward (InstructGPT): value model, GAE, clipped policy and value losses, KL penalty to the
    starting model in the reward."""

    command: ClassVar[str] = "ppo"


class RLOOConfig(RLOOOptions, RLOptions):
    """RLOO: k samples per prompt, leave-one-out baseline, KL penalty in the reward; no value model."""

    command: ClassVar[str] = "rloo"


class GRPOConfig(GRPOOptions, RLOptions):
    """GRPO: G samples per prompt, group-normalised rewards, KL to the starting model in the loss; no value model."""

    command: ClassVar[str] = "grpo"


RL_CONFIGS = (PPOConfig, RLOOConfig, GRPOConfig)
RLConfig = PPOConfig | RLOOConfig | GRPOConfig
"""The online RL commands, which share one trainer (tether.train.rl.trainer)."""
