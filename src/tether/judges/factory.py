"""The refusal judge a command's judge options ask for."""

from __future__ import annotations

from tether.config import JudgeOptions
from tether.errors import ConfigError
from tether.judges.refusal import RefusalJudge


def make_judge(config: JudgeOptions) -> RefusalJudge:
    """Phrases, phrases + classifier, or all three layers (``--judge all`` adds the LLM judge)."""
    llm = None
    if config.judge == "all":
        if not (config.judge_endpoint and config.judge_model):
            raise ConfigError("--judge all needs --judge-endpoint and --judge-model (an OpenAI-compatible LLM judge)")
        from tether.judges.llm_judge import LLMRefusalJudge

        llm = LLMRefusalJudge(
            config.judge_endpoint,
            config.judge_model,
            api_key_env=config.judge_key_env,
            timeout=config.request_timeout,
            retries=config.retries,
        )
    return RefusalJudge(
        layers=config.judge, llm=llm, llm_below=config.judge_below, abstain_below=config.judge_abstain_below
    )
