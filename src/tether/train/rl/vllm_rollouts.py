"""Rollouts through a colocated vLLM engine, which gets the policy's current weights before each rollout.

vLLM serves the starting model from its folder; after every update the policy's weights are loaded into it
in place under their Hugging Face names (a LoRA policy's adapters are merged for the copy and unmerged
again), through the in-process engine as TRL's colocated mode does. Used when vLLM is installed on a CUDA
machine (``--generation-backend auto``) or asked for (``vllm``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from tether.config import RLConfig
from tether.errors import TetherError


def rollout_vllm_engine(config: RLConfig, tokenizer: Any) -> Any:
    """A colocated vLLM engine serving the starting policy, or None for Hugging Face generate."""
    from tether.generation.factory import vllm_problem
    from tether.models.loading import resolve

    if config.generation_backend == "hf":
        return None
    path = resolve(config.model)
    problem = vllm_problem(path)
    if problem is not None:
        if config.generation_backend == "vllm":
            raise TetherError(f"cannot generate rollouts with vLLM: {problem}; or --generation-backend hf")
        return None
    from tether.generation.vllm_backend import VLLMEngine, in_process_vllm_env

    in_process_vllm_env()
    return VLLMEngine(
        path,
        tokenizer,
        batch_size=config.rollout_batch_size,
        seed=config.seed,
        gpu_memory_utilization=config.vllm_gpu_memory_utilization,
    )


@torch.no_grad()
def policy_weights(policy: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """(Hugging Face checkpoint name, tensor) of every policy weight; a peft model yields its merged weights
    (the adapters are merged for the walk and unmerged after it)."""
    from tether.models.lora import is_peft

    if not is_peft(policy):
        yield from ((name, param.data) for name, param in policy.named_parameters())
        return
    policy.merge_adapter()
    try:
        for name, param in policy.named_parameters():
            if "lora_" in name:
                continue
            yield name.removeprefix("base_model.model.").replace(".base_layer", ""), param.data
    finally:
        policy.unmerge_adapter()
