"""The config of `tether loop`: where each iteration's training signal comes from, how it trains, what it
measures. Checked whole (every source file, constitution and eval set read) before any model loads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tether.config import DPOConfig, ModelOptions, Options, ORPOConfig, SFTConfig, SimPOConfig, located
from tether.config.evaluation import endpoint_url

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
"""A source's or eval's name: also the name of its folder in the run."""


class SourceOptions(Options):
    name: Name
    """What the report and every record's provenance call this source (and its folder in the run)."""
    limit: int | None = Field(None, ge=1)
    """Use only the first N prompts (or records) of this source per iteration."""


class PreferenceFileSource(SourceOptions):
    """A file of preference records made elsewhere: `tether redteam --export-pairs`, `tether guard export`,
    `tether cai revise`/`cai label` outputs, or your own (read as `tether dpo` reads it, extra fields kept)."""

    type: Literal["preferences"]
    path: str
    """The preference file (JSONL/JSON/CSV/Parquet)."""


class RedteamSource(SourceOptions):
    """A red-team campaign against the iteration's starting model: its successful attacks, as `tether redteam
    --export-pairs` writes them (a helpful refusal chosen over the harmful answer)."""

    type: Literal["redteam"]
    prompts: str
    """Harmful requests in any format `tether redteam --data` reads."""
    attacks: str = "direct"
    """Comma-separated attacks (`tether redteam-attacks` lists them)."""
    success: Literal["strict", "lenient"] = "strict"
    """strict: an attack succeeds when the answer complies; lenient: also when it partly does."""
    refusal_field: str | None = None
    """A field of the prompts file holding a written refusal of that request (e.g. `refusal`): where a row has
    one, its successful attacks choose it instead of a generic helpful refusal (prompt-specific refusals
    teach refusing *this* request, generic ones refusing in general)."""


class CaiReviseSource(SourceOptions):
    """Constitutional AI's critique and revise on the iteration's starting model (`tether cai revise`): each
    usable final revision is chosen over the original response."""

    type: Literal["cai-revise"]
    prompts: str
    """Prompts as `tether cai revise --prompts` reads them."""
    constitution: Path | None = None
    """Constitution file (default: the one tether ships)."""
    rounds: int = Field(1, ge=1, le=16)
    """Critique-revision rounds per prompt."""
    critic_model: str | None = None
    """A stronger local model to write critiques and revisions (default: the model being trained)."""
    critic_endpoint: str | None = None
    """An OpenAI-compatible endpoint to write critiques and revisions."""
    critic_endpoint_model: str | None = None
    """Model name to request from critic_endpoint."""
    critique_max_new_tokens: int = Field(96, ge=1)
    """Tokens of each critique."""
    fallback_field: str | None = None
    """A field of the prompts file holding a written answer (e.g. `refusal`): a prompt whose chain has no
    usable revision, and whose response is not already a refusal (phrase matcher), gets that answer chosen over
    its response instead (a weak critic's fallback; the report counts these)."""

    @field_validator("critic_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return endpoint_url(value)

    @model_validator(mode="after")
    def _critic(self) -> CaiReviseSource:
        if self.critic_endpoint and not self.critic_endpoint_model:
            raise located("critic_endpoint needs critic_endpoint_model", "critic_endpoint")
        if self.critic_endpoint and self.critic_model:
            raise located("give critic_model or critic_endpoint, not both", "critic_model")
        return self


class CaiLabelSource(SourceOptions):
    """AI preference labels on samples of the iteration's starting model (`tether cai label`): soft labels
    (``p_chosen``) that cdpo and robust DPO use."""

    type: Literal["cai-label"]
    prompts: str
    """Prompts as `tether cai label --prompts` reads them."""
    constitution: Path | None = None
    """Constitution file (default: the one tether ships)."""
    samples: int = Field(2, ge=2)
    """Responses sampled per prompt."""
    judge_model: str | None = None
    """A stronger local judge (default: the model being trained)."""
    judge_endpoint: str | None = None
    """An OpenAI-compatible endpoint as judge."""
    judge_endpoint_model: str | None = None
    """Model name to request from judge_endpoint."""

    @field_validator("judge_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        return endpoint_url(value)

    @model_validator(mode="after")
    def _judge(self) -> CaiLabelSource:
        if self.judge_endpoint and not self.judge_endpoint_model:
            raise located("judge_endpoint needs judge_endpoint_model", "judge_endpoint")
        return self


class GuardReviewSource(SourceOptions):
    """Reviewed production interactions in a guard store, as `tether guard export` writes them."""

    type: Literal["guard"]
    database: str
    """The guard store's SQLAlchemy URL (sqlite:///guard.db, postgresql+psycopg://...)."""


class KeepHelpingSource(SourceOptions):
    """Samples of the iteration's starting model on safe prompts: each answer the phrase matcher does not take
    for a refusal is chosen over a refusal (the model's own, when it sampled one, else a written one), so
    training to refuse harm does not teach refusing what is safe."""

    type: Literal["keep-helping"]
    prompts: str
    """Safe prompts (benign, and scary-sounding but safe) as `tether cai revise --prompts` reads them."""
    samples: int = Field(2, ge=1)
    """Answers sampled per prompt; each helpful one makes a pair."""
    temperature: float = Field(0.7, gt=0)
    """Sampling temperature."""


Source = Annotated[
    PreferenceFileSource | RedteamSource | CaiReviseSource | CaiLabelSource | GuardReviewSource | KeepHelpingSource,
    Field(discriminator="type"),
]

RECIPES: dict[str, type[Options]] = {"dpo": DPOConfig, "orpo": ORPOConfig, "simpo": SimPOConfig, "sft": SFTConfig}
"""The recipes a loop can train with (SFT trains on each record's chosen answer)."""

SET_BY_LOOP = frozenset({"model", "data", "out", "resume", "overwrite", "progress"})


class TrainStage(Options):
    recipe: Literal["dpo", "orpo", "simpo", "sft"] = "dpo"
    """The tether recipe each iteration trains with."""
    options: dict[str, Any] = Field(default_factory=dict)
    """That recipe's options as its own config file spells them (as in `tether dpo`), except model, data and
    out, which the loop sets."""

    @model_validator(mode="after")
    def _options(self) -> TrainStage:
        taken = sorted(SET_BY_LOOP & set(self.options))
        if taken:
            raise located(f"{taken[0]} is set by the loop for each iteration", "options", taken[0])
        recipe_config(self, model="m", data="d", out=Path("o"))  # the recipe's own checks, located under options
        return self


def recipe_config(stage: TrainStage, *, model: str, data: str, out: Path, **extra: Any) -> Any:
    """The recipe's config for one iteration; an invalid option is an error located at ``options.<name>``."""
    from pydantic import ValidationError

    cls = RECIPES[stage.recipe]
    try:
        return cls(**{**stage.options, "model": model, "data": data, "out": out, **extra})
    except ValidationError as err:
        first = err.errors()[0]
        where = [str(p) for p in first["loc"]] or ["options"]
        raise located(f"{stage.recipe}: {first['msg'].removeprefix('Value error, ')}", "options", *where) from None


class EvalSet(Options):
    name: Name
    """What the report calls this measurement."""
    suite: str
    """A prompt suite (`tether eval-suites`): harmful (the harm axis), harmless or xstest (over-refusal)."""
    data: str
    """The suite's data file."""
    limit: int | None = Field(None, ge=1)
    """Use only the first N prompts."""


class LoopConfig(ModelOptions):
    """The closed loop: per iteration, gather signal from every source against the current model, merge and
    de-duplicate it with provenance, train, measure harm and over-refusal, and report every iteration."""

    command: ClassVar[str] = "loop"
    file_only: ClassVar[frozenset[str]] = frozenset({"sources", "train", "evals"})

    out: Path = Path("runs/loop")
    """Run folder: iter-000 (the starting model measured), iter-001, ... each with sources, data, train, eval;
    loop.json and report.html over all iterations."""
    iterations: int = Field(1, ge=1, le=100)
    """Iterations to run (a later --resume with more adds iterations)."""
    sources: list[Source] = Field(min_length=1)
    """Where each iteration's training signal comes from."""
    train: TrainStage = Field(default_factory=TrainStage)
    """How each iteration trains on its merged data."""
    evals: list[EvalSet] = Field(min_length=1)
    """What each iteration measures (at least one harmful and one safe set to see both axes)."""
    judge: str = "classifier"
    """Refusal judge of the measurements and of red-team success (`tether judges`)."""
    max_new_tokens: int = Field(128, ge=1)
    """Tokens of every generated answer (sources and measurements)."""
    batch_size: int = Field(32, ge=1)
    """Prompts answered at once."""
    generation_backend: Literal["auto", "hf", "vllm"] = "auto"
    """Local generation engine: vLLM when installed on a GPU machine ('auto'), else Hugging Face generate."""
    examples: int = Field(3, ge=0)
    """Example answers per eval set shown before and after in the report."""
    seed: int = 0
    """Seed of sampling (each iteration adds its number)."""
    resume: bool = False
    """Continue the loop in --out: finished stages are kept, the rest done (add iterations by raising
    --iterations)."""
    overwrite: bool = False
    """Replace a loop already in --out."""
    progress: bool = True
    """Show progress (a bar on a terminal, a line every tenth of the way in a log file)."""

    @model_validator(mode="after")
    def _unique(self) -> LoopConfig:
        for field, items in (("sources", self.sources), ("evals", self.evals)):
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item.name in seen:
                    raise located(f"duplicate name {item.name!r}", field, i, "name")
                seen.add(item.name)
        if self.resume and self.overwrite:
            raise located("give --resume or --overwrite, not both", "resume")
        return self
