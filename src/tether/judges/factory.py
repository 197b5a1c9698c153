"""The refusal judge and the harm judge a command's judge options ask for (:mod:`tether.judges.registry`)."""

from __future__ import annotations

from typing import Any

from tether.config import JudgeOptions
from tether.judges.registry import JudgeSettings, build_judge


def make_judge(config: JudgeOptions) -> Any:
    """The refusal judge ``--judge`` names (default: phrases, then the cross-encoder)."""
    settings = JudgeSettings(
        model=config.judge_model,
        endpoint=config.judge_endpoint,
        key_env=config.judge_key_env,
        label=config.judge_label,
        request_timeout=config.request_timeout,
        retries=config.retries,
        abstain_below=config.judge_abstain_below,
        llm_below=config.judge_below,
    )
    return build_judge(config.judge, "refusal", settings)


def make_harm_judge(config: JudgeOptions) -> Any | None:
    """The harm judge ``--harm-judge`` names, or None when none is configured."""
    if config.harm_judge is None:
        return None
    settings = JudgeSettings(
        model=config.harm_judge_model,
        endpoint=config.harm_judge_endpoint,
        key_env=config.harm_judge_key_env,
        label=config.harm_judge_label,
        request_timeout=config.request_timeout,
        retries=config.retries,
    )
    return build_judge(config.harm_judge, "harm", settings)
