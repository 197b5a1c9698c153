"""What each training command holds and computes, as a :class:`~tether.train.memory.Workload`.

Rows per micro-batch with gradients: ``batch_size`` sequences for SFT and KTO, ``2 * batch_size`` for the
paired losses and ``rm train`` (chosen and rejected in one batch); KTO also scores its ``batch_size``
mismatched (KL) sequences without gradients first. DPO and KTO score every sequence with the reference once,
``ref_batch_size`` at a time, before training. Online RL holds the policy, the reference (a frozen copy
unless fresh LoRA adapters can be switched off), the PPO value model and the reward models; it generates
``prompts_per_step * samples_per_prompt`` responses in batches of ``rollout_batch_size``, scores them in
batches of that size, and updates on ``minibatch_size`` of them at a time. The length of every pass is the
longest sequence the data can produce after truncation (no longer than ``max_length``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tether.config import PPOConfig, ReferenceConfig, RLConfig, TrainingConfig
from tether.train.memory import JUDGE_BYTES, WEIGHT_BYTES, ModelShape, Trained, Workload, read_shape
from tether.train.preflight import Build


def adapter_rank(spec: str) -> int | None:
    """The LoRA rank of a peft adapter folder (whose adapters a run keeps training), else None."""
    from tether.models.loading import adapter_base, resolve

    try:
        source = resolve(spec)
        if adapter_base(source) is None:
            return None
        return int(json.loads((Path(source) / "adapter_config.json").read_text()).get("r", 16))
    except Exception:  # an unreadable folder: the load reports it
        return None


def trained(config: TrainingConfig | RLConfig, *, scalar_head: bool = False) -> Trained:
    """All weights, fresh LoRA adapters (``--lora``) or an adapter folder's own adapters."""
    rank = adapter_rank(config.model)
    if rank is None and config.lora:
        rank = config.lora_r
    targets = config.lora_target_modules
    names = targets if targets == "all-linear" else tuple(t.strip() for t in targets.split(","))
    return Trained(rank, names, scalar_head)


def offline_workload(
    config: TrainingConfig,
    shape: ModelShape,
    *,
    longest: int,
    examples: int,
    data_tokens: int,
    rows_per_example: int = 1,
    kl_batch: bool = False,
    scalar_head: bool = False,
) -> Workload:
    """sft (1 row per example), dpo/orpo/simpo/rm train (2 rows per pair), kto (1 row plus its KL row); a
    micro-batch holds at most ``examples``."""
    length = min(config.max_length, longest)
    batch = min(config.batch_size, examples)
    reference = min(config.ref_batch_size, 2 * examples) if isinstance(config, ReferenceConfig) else 0
    nograd = max(reference, batch if kl_batch else 0)
    return Workload(
        shape=shape,
        rows=rows_per_example * batch,
        length=length,
        trained=(trained(config, scalar_head=scalar_head),),
        dtype=config.dtype,
        mixed_precision=config.mixed_precision,
        checkpointing=config.gradient_checkpointing is True,
        nograd_rows=nograd,
        nograd_length=length,
        data_tokens=data_tokens,
    )


def reward_bytes(config: RLConfig) -> int:
    """Weights of the reward models and the refusal judge that an RL run's rewards load."""
    from tether.reward.sources import parse_reward_spec

    total, judged = 0, False
    for spec in config.reward:
        _, _, kind, arg = parse_reward_spec(spec)
        if kind == "rm":
            shape = read_shape(arg, trust_remote_code=config.trust_remote_code)
            total += shape.params * WEIGHT_BYTES[config.dtype] if shape else 0
        elif kind == "judge" and not judged:
            total, judged = total + int(JUDGE_BYTES), True
    return total


def rl_workload(config: RLConfig, shape: ModelShape, *, longest_prompt: int) -> Workload:
    """ppo/rloo/grpo: rollouts of the longest prompt plus ``max_new_tokens``."""
    length = min(config.max_prompt_length, longest_prompt) + config.max_new_tokens
    samples = config.prompts_per_step * config.samples_per_prompt
    policy = trained(config)
    fresh_lora = policy.lora_r is not None and adapter_rank(config.model) is None
    models = (policy, trained(config, scalar_head=True)) if isinstance(config, PPOConfig) else (policy,)
    return Workload(
        shape=shape,
        rows=min(config.minibatch_size, samples),
        length=length,
        trained=models,
        dtype=config.dtype,
        mixed_precision=config.mixed_precision,
        checkpointing=config.gradient_checkpointing is True,
        frozen_models=0 if fresh_lora else 1,
        nograd_rows=min(config.rollout_batch_size, samples),
        nograd_length=length,
        generation_rows=min(config.rollout_batch_size, samples),
        generation_length=length,
        data_tokens=0,
        extra_bytes=reward_bytes(config),
    )


def data_facts(items: Sequence[Any], copies: int = 1) -> dict[str, int]:
    """``longest``, ``examples`` and ``data_tokens`` of tokenized training items (``copies``: token lists
    held per item, e.g. 2 for a pair's two sequences)."""
    return {"longest": max(map(len, items)), "examples": len(items), "data_tokens": copies * sum(map(len, items))}


def offline_build(config: TrainingConfig, **facts: Any) -> Build:
    """A :data:`~tether.train.preflight.Build` for an offline command: the model's shape is read once."""
    shape = read_shape(config.model, trust_remote_code=config.trust_remote_code, revision=config.revision)
    return lambda c: None if shape is None else offline_workload(c, shape, **facts)
