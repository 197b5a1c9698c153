"""The configs of `tether cai revise` (prompts, a constitution, a generator, a critic, rounds, the run folder)
and `tether cai label` (the same prompts, constitution and generator, samples per prompt, a judge)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tether.config import ModelOptions, Options, located
from tether.config.evaluation import EndpointOptions, endpoint_url


class GeneratorOptions(EndpointOptions):
    panel: ClassVar[str] = "Generator"

    endpoint: str | None = None
    """Write the first responses with an OpenAI-compatible endpoint (base URL, e.g. http://localhost:8000/v1)
    instead of --model."""
    endpoint_model: str | None = None
    """Model name to request from --endpoint."""
    endpoint_key_env: str = "TETHER_TARGET_API_KEY"
    """Environment variable holding --endpoint's API key (never put keys in configs)."""
    concurrency: int = Field(4, ge=1)
    """Requests in flight at once to an endpoint (generator or critic)."""
    generation_backend: Literal["auto", "hf", "vllm"] = "auto"
    """Local generation engine: vLLM when installed on a GPU machine ('auto'), else Hugging Face generate."""

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return endpoint_url(value)


class CriticOptions(Options):
    panel: ClassVar[str] = "Critic"

    critic_model: str | None = None
    """Local model that writes the critiques and revisions (an embedded name, folder or hub id; default: the
    generator itself, loaded once, as in Bai et al.)."""
    critic_endpoint: str | None = None
    """An OpenAI-compatible endpoint that writes the critiques and revisions (instead of --critic-model)."""
    critic_endpoint_model: str | None = None
    """Model name to request from --critic-endpoint."""
    critic_key_env: str = "TETHER_CRITIC_API_KEY"
    """Environment variable holding --critic-endpoint's API key."""

    @field_validator("critic_endpoint")
    @classmethod
    def _check_critic_endpoint(cls, value: str | None) -> str | None:
        return endpoint_url(value)


class CaiReviseConfig(CriticOptions, GeneratorOptions, ModelOptions):
    """Critique and revise: answer each prompt, then for N rounds critique and revise the answer under a
    principle of the constitution; keep every chain and write SFT and preference data."""

    command: ClassVar[str] = "cai revise"

    prompts: str
    """Prompts: JSONL/JSON/CSV/Parquet rows with `prompt` (text or messages) or `instruction`; optional `id`,
    `category`."""
    prompts_format: Literal["auto", "jsonl", "json", "csv", "parquet", "hub"] = "auto"
    """Reader of --prompts; 'auto' picks by file extension."""
    constitution: Path | None = None
    """Constitution file (`command: constitution`; default: the one tether ships, `tether cai principles`)."""
    out: Path
    """Run folder: run.json, chains.jsonl (every chain), sft.jsonl (for `tether sft`), preferences.jsonl
    (for `tether dpo`), summary.json, config.yaml."""
    rounds: int = Field(2, ge=1, le=16)
    """Critique-revision rounds per prompt, each under one principle."""
    limit: int | None = Field(None, ge=1)
    """Use only the first N prompts (a later run with a larger limit and --resume adds the rest)."""
    batch_size: int = Field(16, ge=1)
    """Prompts per batch (each finished batch is saved, so a stopped run resumes after the last one)."""
    max_new_tokens: int = Field(256, ge=1)
    """Tokens of each response and revision."""
    critique_max_new_tokens: int = Field(160, ge=1)
    """Tokens of each critique."""
    temperature: float = Field(0.0, ge=0)
    """Sampling temperature of generator and critic (0: greedy)."""
    seed: int = 0
    """Seed of the principle picked each round (per prompt, see tether.cai.revise) and of sampling."""
    max_growth: float = Field(4.0, gt=1)
    """A revision longer than this many times the response it revises (or than 400 characters, whichever is
    more) is unusable (too_long)."""
    resume: bool = False
    """Continue the run in --out: finished prompts are kept, the rest (and failed ones) are done."""
    overwrite: bool = False
    """Replace a run already in --out."""
    progress: bool = True
    """Show progress (a bar on a terminal, a line every tenth of the way in a log file)."""

    @model_validator(mode="after")
    def _sources(self) -> CaiReviseConfig:
        if self.endpoint and not self.endpoint_model:
            raise located("--endpoint needs --endpoint-model (the model name to request)", "endpoint")
        if self.critic_endpoint and not self.critic_endpoint_model:
            raise located("--critic-endpoint needs --critic-endpoint-model", "critic_endpoint")
        if self.critic_endpoint and self.critic_model:
            raise located("give --critic-model or --critic-endpoint, not both", "critic_model")
        return self


class JudgeOptions(Options):
    panel: ClassVar[str] = "Judge"

    judge_model: str | None = None
    """Local model that labels the pairs, read from the log-probabilities of the option tokens (an embedded
    name, folder or hub id; default: the generator itself, loaded once, as in Bai et al.)."""
    judge_endpoint: str | None = None
    """An OpenAI-compatible endpoint that labels the pairs (instead of --judge-model), read from its first
    answer token's top log-probabilities where the server returns them, else from its answer text."""
    judge_endpoint_model: str | None = None
    """Model name to request from --judge-endpoint."""
    judge_key_env: str = "TETHER_JUDGE_API_KEY"
    """Environment variable holding --judge-endpoint's API key."""
    judge_max_new_tokens: int = Field(8, ge=1)
    """Tokens of an endpoint judge's answer (only its opening "A" or "B" is read)."""
    judge_batch_size: int = Field(8, ge=1)
    """Judge prompts scored at once by a local judge."""

    @field_validator("judge_endpoint")
    @classmethod
    def _check_judge_endpoint(cls, value: str | None) -> str | None:
        return endpoint_url(value)


class CaiLabelConfig(JudgeOptions, GeneratorOptions, ModelOptions):
    """AI preference labels: sample responses per prompt, ask a judge in both orders which better meets a
    principle of the constitution, and write preference records with the judge's probability as a soft label."""

    command: ClassVar[str] = "cai label"

    prompts: str
    """Prompts: JSONL/JSON/CSV/Parquet rows with `prompt` (text or messages) or `instruction`; optional `id`,
    `category`."""
    prompts_format: Literal["auto", "jsonl", "json", "csv", "parquet", "hub"] = "auto"
    """Reader of --prompts; 'auto' picks by file extension."""
    constitution: Path | None = None
    """Constitution file (`command: constitution`; default: the one tether ships, `tether cai principles`)."""
    out: Path
    """Run folder: run.json, labels.jsonl (every judgement), preferences.jsonl (for `tether dpo --loss cdpo` and
    `tether rm train`, with `p_chosen`), agreement.jsonl (with --agreement), summary.json, config.yaml."""
    samples: int = Field(2, ge=2, le=16)
    """Responses sampled per prompt; each is paired with the next (N responses give N - 1 pairs)."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature of the responses (each sample has its own seed, so they differ)."""
    max_new_tokens: int = Field(256, ge=1)
    """Tokens of each response."""
    seed: int = 0
    """Seed of the sampling (sample i uses seed + i) and of the principle picked per pair (per prompt id)."""
    agreement: str | None = None
    """Preference records whose `chosen` is known to be better (e.g. human labels): the judge labels each pair
    in both orders and the summary reports its agreement (share with p(chosen) > 0.5) and position bias there."""
    agreement_format: Literal["auto", "jsonl", "json", "csv", "parquet", "hub", "hh-rlhf"] = "auto"
    """Reader of --agreement."""
    limit: int | None = Field(None, ge=1)
    """Use only the first N prompts (a later run with a larger limit and --resume adds the rest)."""
    batch_size: int = Field(16, ge=1)
    """Prompts per batch (each finished batch is saved, so a stopped run resumes after the last one)."""
    resume: bool = False
    """Continue the run in --out: finished prompts are kept, the rest (and failed ones) are done."""
    overwrite: bool = False
    """Replace a run already in --out."""
    progress: bool = True
    """Show progress (a bar on a terminal, a line every tenth of the way in a log file)."""

    @model_validator(mode="after")
    def _sources(self) -> CaiLabelConfig:
        if self.endpoint and not self.endpoint_model:
            raise located("--endpoint needs --endpoint-model (the model name to request)", "endpoint")
        if self.judge_endpoint and not self.judge_endpoint_model:
            raise located("--judge-endpoint needs --judge-endpoint-model", "judge_endpoint")
        if self.judge_endpoint and self.judge_model:
            raise located("give --judge-model or --judge-endpoint, not both", "judge_model")
        return self
