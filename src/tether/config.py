"""Typed configs, one per command, composed from small option groups.

Each field's docstring is its help text. The CLI flags (``--max-steps``) and the YAML keys
(``max_steps:``) are generated from the same fields, so a config file and a command line say the same
thing. ``tether validate CONFIG.yaml`` checks a file against these classes without loading anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.errors import ConfigError
from tether.models.embedded import DEFAULT_MODEL


class Options(BaseModel):
    """Base of every option group: unknown keys are errors, field docstrings are help texts."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)
    panel: ClassVar[str] = "Options"

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
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass: far less memory, about a third more compute."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast matrix products to bf16/fp16 while weights, gradients and optimizer stay fp32 (accelerate).
    bf16 is several times faster on CPUs with AVX512-BF16 or AMX and on recent GPUs; 'no' is exact fp32."""


class SFTOptions(Options):
    panel: ClassVar[str] = "SFT"

    packing: bool = False
    """Pack several short examples into one sequence (attention stays within each example)."""


class SFTConfig(SFTOptions, TrainOptions, DataOptions, LoraOptions, ModelOptions):
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


class DPOConfig(
    DPOOptions, PairOptions, PreferenceOptions, ReferenceOptions, TrainOptions, DataOptions, LoraOptions, ModelOptions
):
    """Direct preference optimisation and its variants on (prompt, chosen, rejected) pairs."""

    command: ClassVar[str] = "dpo"


class ORPOOptions(Options):
    panel: ClassVar[str] = "ORPO"

    orpo_lambda: float = Field(0.1, gt=0)
    """Weight of the odds-ratio term against the chosen NLL term."""


class ORPOConfig(ORPOOptions, PreferenceOptions, TrainOptions, DataOptions, LoraOptions, ModelOptions):
    """ORPO: SFT on the chosen completion plus an odds-ratio preference term; no reference model."""

    command: ClassVar[str] = "orpo"


class SimPOOptions(Options):
    panel: ClassVar[str] = "SimPO"

    beta: float = Field(2.0, gt=0)
    """Scale of the length-normalised reward beta * log pi(y|x) / |y| (the paper uses 2 to 2.5)."""
    gamma: float = Field(0.5, ge=0)
    """Target reward margin between chosen and rejected."""


class SimPOConfig(SimPOOptions, PairOptions, PreferenceOptions, TrainOptions, DataOptions, LoraOptions, ModelOptions):
    """SimPO: length-normalised log-likelihood margin with a target gap; no reference model."""

    command: ClassVar[str] = "simpo"


class KTOOptions(Options):
    panel: ClassVar[str] = "KTO"

    desirable_weight: float = Field(1.0, gt=0)
    """lambda_D, the weight of desirable examples' losses."""
    undesirable_weight: float = Field(1.0, gt=0)
    """lambda_U, the weight of undesirable examples' losses (raise it when undesirable ones are rarer)."""


class KTOConfig(KTOOptions, PreferenceOptions, ReferenceOptions, TrainOptions, DataOptions, LoraOptions, ModelOptions):
    """KTO on unpaired (prompt, completion, label) examples; label true means desirable."""

    command: ClassVar[str] = "kto"


PREFERENCE_CONFIGS = (DPOConfig, ORPOConfig, SimPOConfig)


class DemoConfig(ModelOptions):
    """The main job on the embedded default: measure, build on-policy pairs, train with DPO, measure again."""

    command: ClassVar[str] = "demo"
    out: Path = Path("runs/demo")
    """Output folder of the demo run (pairs, DPO run, results JSON, report.html)."""
    samples: int = Field(2, ge=1)
    """Answers sampled from the model per training prompt; each can make one on-policy pair."""
    temperature: float = Field(0.7, ge=0)
    """Sampling temperature of the training answers (the measurements use greedy decoding)."""
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
    max_new_tokens: int = Field(64, ge=1)
    """Tokens generated per answer, for the pairs and for the measurements."""
    generation_backend: Literal["auto", "hf", "vllm"] = "auto"
    """Generation engine: vLLM when installed on a GPU machine ('auto'), else Hugging Face generate."""
    mixed_precision: Literal["no", "bf16"] = "no"
    """Precision of the DPO step's matrix products (bf16 autocast is several times faster on CPUs with
    AVX512-BF16 and on GPUs; 'no' for exact fp32). Generation and measurement always run in fp32."""
    seed: int = 0
    """Seed of sampling and training."""


class RewardTrainOptions(Options):
    panel: ClassVar[str] = "Reward model"

    lr: float = Field(1e-5, gt=0)
    """Peak learning rate (AdamW): about 1e-5 for all weights, 1e-4 with --lora."""
    max_prompt_length: int = Field(512, ge=1)
    """Prompts longer than this keep their last tokens; responses are then cut to fit max_length."""
    center_rewards: float = Field(0.0, ge=0)
    """Coefficient c of the centring term c (r_chosen + r_rejected)^2 that keeps rewards near zero
    (Eisenstein et al. 2023; 0.01 is usual)."""


class RMTrainConfig(RewardTrainOptions, TrainOptions, DataOptions, LoraOptions, ModelOptions):
    """Train a reward model: a scalar head on a causal LM, Bradley-Terry loss on (prompt, chosen, rejected)
    pairs, with each pair's optional `margin`."""

    command: ClassVar[str] = "rm-train"


class RMEvalConfig(Options):
    """Evaluate a reward model on held-out pairs: pairwise accuracy with a 95% interval, the reward
    distribution and the correlation of reward with response length."""

    command: ClassVar[str] = "rm-eval"
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

    command: ClassVar[str] = "rm-score"
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
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass: far less memory, about a third more compute."""
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


_RL_BASES = (RLTrainOptions, PolicyUpdateOptions, RolloutOptions, LoraOptions, ModelOptions)


class PPOConfig(PPOOptions, *_RL_BASES):
    """PPO from a reward (InstructGPT): value model, GAE, clipped policy and value losses, KL penalty to the
    starting model in the reward."""

    command: ClassVar[str] = "ppo"


class RLOOConfig(RLOOOptions, *_RL_BASES):
    """RLOO: k samples per prompt, leave-one-out baseline, KL penalty in the reward; no value model."""

    command: ClassVar[str] = "rloo"


class GRPOConfig(GRPOOptions, *_RL_BASES):
    """GRPO: G samples per prompt, group-normalised rewards, KL to the starting model in the loss; no value model."""

    command: ClassVar[str] = "grpo"


RL_CONFIGS = (PPOConfig, RLOOConfig, GRPOConfig)


class TargetOptions(Options):
    panel: ClassVar[str] = "Target"

    endpoint: str | None = None
    """Evaluate an OpenAI-compatible endpoint (base URL, e.g. http://localhost:8000/v1) instead of --model."""
    endpoint_model: str | None = None
    """Model name to request from --endpoint."""
    endpoint_key_env: str = "TETHER_TARGET_API_KEY"
    """Environment variable holding the endpoint's API key (never put keys in configs)."""
    concurrency: int = Field(4, ge=1)
    """Requests in flight at once to --endpoint."""
    generation_backend: Literal["auto", "hf", "vllm"] = "auto"
    """Local generation engine: vLLM when installed on a GPU machine ('auto'), else Hugging Face generate."""


class JudgeOptions(Options):
    panel: ClassVar[str] = "Judge"

    judge: Literal["phrases", "classifier", "all"] = "classifier"
    """Refusal judge layers: phrases only; phrases then the embedding classifier; or all three (needs
    --judge-endpoint): the LLM re-judges answers the classifier is unsure of."""
    judge_endpoint: str | None = None
    """OpenAI-compatible endpoint of the LLM judge (nothing is sent anywhere unless this is set)."""
    judge_model: str | None = None
    """Model name to request from --judge-endpoint."""
    judge_key_env: str = "TETHER_JUDGE_API_KEY"
    """Environment variable holding the judge endpoint's API key."""
    judge_below: float = Field(0.7, gt=0, le=1)
    """The LLM judge re-judges answers whose classifier confidence is below this."""


class EvalConfig(JudgeOptions, TargetOptions, ModelOptions):
    """Run a safety eval suite on a model or endpoint: answers, verdicts, rates with 95% intervals, a report."""

    command: ClassVar[str] = "eval"
    suite: str
    """Suite name (see `tether eval-suites`), e.g. harmful, xstest, bbq, truthfulqa-mc1."""
    data: str
    """The suite's data: a file or folder in one of the formats the suite reads, or hub:NAME."""
    out: Path
    """Run folder: run.json, samples.jsonl (every prompt, answer and verdict), summary.json, report.html."""
    limit: int | None = Field(None, ge=1)
    """Use only the first N samples."""
    max_new_tokens: int = Field(256, ge=1)
    """Tokens generated per answer."""
    temperature: float = Field(0.0, ge=0)
    """Sampling temperature (0: greedy)."""
    seed: int = 0
    """Sampling seed."""
    batch_size: int = Field(64, ge=1)
    """Prompts generated and judged per batch (and saved, so a stopped run resumes from the last batch)."""
    toxicity_model: str | None = None
    """Text classifier for the toxicity suite: a local folder or a hub id (e.g. unitary/toxic-bert), or
    profanity-check: the offline alt-profanity-check offensive-language SVM (pip install alt-profanity-check==1.9.1;
    not Perspective API, so its figures are not comparable to published RealToxicityPrompts numbers)."""
    toxicity_label: str | None = None
    """The classifier's toxic label (default: the one label whose name contains 'toxic')."""
    toxicity_threshold: float = Field(0.5, gt=0, lt=1)
    """A continuation with p(toxic) at or above this counts as toxic."""
    resume: bool = False
    """Continue the run in --out, skipping samples already judged."""
    overwrite: bool = False
    """Replace a run already in --out."""
    progress: bool = True
    """Show a progress bar."""


DEFAULT_ATTACKS = (
    "direct,base64,rot13,leetspeak,past_tense,zero_width,roleplay_nova,hypothetical_research,fiction_story,"
    "refusal_suppression_rules,prefix_injection_sure,many_shot,indirect_review_note,crescendo"
)


class RedteamConfig(JudgeOptions, TargetOptions, ModelOptions):
    """Attack a model or endpoint with prompts x attacks; store every attempt; report attack success."""

    command: ClassVar[str] = "redteam"
    data: str
    """Harmful requests in any format the harmful suite reads (HarmBench/AdvBench/JailbreakBench CSV, ...)."""
    out: Path
    """Campaign folder: run.json, samples.jsonl (every attempt), summary.json, report.html."""
    attacks: str = DEFAULT_ATTACKS
    """Comma-separated attacks: direct, crescendo, pair, converter names, template names (`tether redteam-list`)."""
    templates_dir: str | None = None
    """Also load jailbreak templates from this folder (garak format, e.g. DAN-family JSON files)."""
    attacker_model: str | None = None
    """Local model that writes PAIR's attack prompts."""
    attacker_endpoint: str | None = None
    """OpenAI-compatible endpoint of PAIR's attacker (instead of --attacker-model)."""
    attacker_endpoint_model: str | None = None
    """Model name to request from --attacker-endpoint."""
    pair_iterations: int = Field(3, ge=1)
    """PAIR's query budget per request."""
    translator_model: str | None = None
    """Local model for the translate converter (e.g. a multilingual instruct model)."""
    translator_endpoint: str | None = None
    """OpenAI-compatible endpoint for the translate converter (instead of --translator-model)."""
    translator_endpoint_model: str | None = None
    """Model name to request from --translator-endpoint."""
    translate_to: str = "Zulu"
    """Language of the translate converter (low-resource languages break safety training most often)."""
    success: Literal["strict", "lenient"] = "strict"
    """What counts as a successful attack: the judge says 'complies' (strict) or also 'partial' (lenient)."""
    export_pairs: Path | None = None
    """Write the successful attacks here as preference pairs for `tether dpo` (attack prompt, a refusal as
    chosen, the harmful answer as rejected)."""
    limit: int | None = Field(None, ge=1)
    """Use only the first N requests."""
    max_new_tokens: int = Field(256, ge=1)
    """Tokens generated per answer."""
    temperature: float = Field(0.0, ge=0)
    """Target sampling temperature (0: greedy)."""
    seed: int = 0
    """Sampling seed."""
    batch_size: int = Field(32, ge=1)
    """Requests per batch (each batch is saved, so a stopped campaign resumes from the last one)."""
    resume: bool = False
    """Continue the campaign in --out."""
    overwrite: bool = False
    """Replace a campaign already in --out."""
    progress: bool = True
    """Show a progress bar."""


class EvalRescoreConfig(JudgeOptions):
    """Re-judge the stored answers of a prompt-suite run with another judge; no answer is generated again."""

    command: ClassVar[str] = "eval-rescore"
    out: Path
    """The run folder of an earlier `tether eval` (its samples.jsonl is rewritten, summary and report too)."""


class JudgeRefusalConfig(JudgeOptions):
    """Label a JSONL/CSV file of (prompt, response) rows as complies / partial / refuses (or unscored)."""

    command: ClassVar[str] = "judge-refusal"
    input: str
    """Rows with `prompt` and `response` fields (JSONL, JSON or CSV); other fields are kept."""
    output: Path
    """Where to write the rows with a `verdict` field added (JSONL)."""
    prompt_field: str = "prompt"
    """Field holding the request."""
    response_field: str = "response"
    """Field holding the answer to judge."""


CONFIGS: dict[str, type[Options]] = {
    cls.command: cls
    for cls in (
        SFTConfig,
        DPOConfig,
        ORPOConfig,
        SimPOConfig,
        KTOConfig,
        DemoConfig,
        EvalConfig,
        JudgeRefusalConfig,
        RedteamConfig,
        EvalRescoreConfig,
        RMTrainConfig,
        RMEvalConfig,
        RMScoreConfig,
        PPOConfig,
        RLOOConfig,
        GRPOConfig,
    )
}


def _key_lines(text: str) -> dict[str, int]:
    """Line number (1-based) of each top-level key in a YAML mapping."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a YAML config into a mapping plus the line of each key; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config: {err.strerror or err}", file=path) from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(
            f"invalid YAML: {getattr(err, 'problem', err)}",
            file=path,
            line=mark.line + 1 if mark else None,
        ) from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("a config file must be a mapping of option: value", file=path, line=1)
    return data, _key_lines(text)


def build_config(
    cls: type[Options],
    values: dict[str, Any],
    *,
    file: str | Path | None = None,
    lines: dict[str, int] | None = None,
) -> Any:
    """Validate ``values`` into ``cls``; the first problem becomes a ConfigError naming file/line/field."""
    try:
        return cls(**values)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        top = str(first["loc"][0]) if first["loc"] else None
        flag = f" (flag --{top.replace('_', '-')})" if top and file is None else ""
        raise ConfigError(
            first["msg"] + flag,
            file=file,
            line=(lines or {}).get(top) if top else None,
            field=field,
        ) from err


def load_config(cls: type[Options], path: str | Path | None, overrides: dict[str, Any]) -> Any:
    """A config from an optional YAML file, with explicitly given CLI flags taking precedence."""
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path is not None:
        values, lines = read_yaml(path)
        command = values.pop("command", cls.command)
        if command != cls.command:
            raise ConfigError(
                f"this config is for `tether {command}`, not `tether {cls.command}`",
                file=path,
                line=lines.get("command"),
                field="command",
            )
    values.update({k: v for k, v in overrides.items() if v is not None})
    if overrides and path is not None:
        # Errors in flag values should not point at a line of the file.
        lines = {k: v for k, v in lines.items() if overrides.get(k) is None}
    return build_config(cls, values, file=path, lines=lines)


def validate_file(path: str | Path) -> Options:
    """Check a config file (its `command:` key picks the schema) without loading any model or data."""
    values, lines = read_yaml(path)
    command = values.pop("command", None)
    if command is None:
        raise ConfigError(f"missing 'command' (one of: {', '.join(CONFIGS)})", file=path, line=1, field="command")
    if command not in CONFIGS:
        raise ConfigError(
            f"unknown command {command!r} (one of: {', '.join(CONFIGS)})",
            file=path,
            line=lines.get("command"),
            field="command",
        )
    return build_config(CONFIGS[command], values, file=path, lines=lines)


def dump_config(config: Options) -> str:
    """The resolved config as YAML, loadable again with ``--config``."""
    data = {"command": type(config).command, **config.model_dump(mode="json")}
    return yaml.safe_dump(data, sort_keys=False)
