"""Batched generation with vLLM, behind the same interface as :class:`GenerationEngine`.

vLLM reads the very prompt token ids the Hugging Face engine builds (``ChatEncoder.prompt_ids``), passed
as ``{"prompt_token_ids": ...}``, so the two backends can never disagree on the chat template. Completions
are decoded with our tokenizer and cut before the first stop string by the HF engine's own helper;
stop strings are also handed to vLLM so that it stops early. Sampled requests get the seed
``params.seed + i`` (``i``: the prompt's position), so a run is reproducible and repeated prompts still
draw different samples; greedy requests get no seed.

vLLM needs a CUDA GPU and a model folder (a peft adapter merged first); use ``make_engine`` to pick a
backend. The tests run this module against a fake ``vllm``; the real vLLM path is exercised only on GPU
machines.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tether.data.records import Message
from tether.data.tokenization import ChatEncoder
from tether.errors import TetherError
from tether.generation.engine import SamplingParams, chat_prompt_ids, decode_completions


class VLLMEngine:
    """Generate answers to chat prompts with ``vllm.LLM``; ``batch_size`` caps the sequences decoded at once."""

    def __init__(
        self,
        model_path: str,
        tokenizer: Any,
        *,
        batch_size: int | None = None,
        progress: bool = False,
        dtype: str = "auto",
        seed: int = 0,
        **llm_kwargs: Any,
    ) -> None:
        try:
            import vllm
        except ImportError as err:
            raise TetherError("vLLM is not installed: `pip install vllm` on a machine with a CUDA GPU") from err
        self.vllm = vllm
        self.tokenizer = tokenizer
        self.encoder = ChatEncoder(tokenizer)
        self.progress = progress
        if batch_size is not None:
            llm_kwargs.setdefault("max_num_seqs", batch_size)
        llm_kwargs.setdefault("tokenizer", _tokenizer_folder(tokenizer) or model_path)
        llm_kwargs.setdefault("trust_remote_code", False)
        llm_kwargs.setdefault("load_format", "safetensors")  # never fall back to pickle weights
        self.llm = vllm.LLM(model=model_path, dtype=dtype, seed=seed, **llm_kwargs)

    def prompt_ids(self, prompt: str | Sequence[Message]) -> list[int]:
        return chat_prompt_ids(self.encoder, prompt)

    def generate(self, prompts: Sequence[str | Sequence[Message]], params: SamplingParams) -> list[str]:
        """One completion per prompt, in order, cut at the first stop string."""
        return decode_completions(self.tokenizer, self.generate_ids(prompts, params), params.stop)

    def generate_ids(self, prompts: Sequence[str | Sequence[Message]], params: SamplingParams) -> list[list[int]]:
        """Generated token ids per prompt, in order, ending at the first EOS."""
        return self.generate_from_ids([self.prompt_ids(p) for p in prompts], params)

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Replace the served weights in place (online RL: the policy changes every step).

        ``named_tensors`` use the Hugging Face checkpoint names (vLLM's own loader maps them, fusing q/k/v
        and gate/up). This reaches the model through the in-process engine
        (``llm.llm_engine.model_executor.driver_worker.model_runner.model``), the route TRL's colocated
        mode takes; it needs ``VLLM_ENABLE_V1_MULTIPROCESSING=0``, which :func:`in_process_vllm_env` sets.
        The prefix cache is reset afterwards, as cached keys and values belong to the old weights.
        """
        model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        for name, tensor in named_tensors:
            model.load_weights([(name, tensor)])
        self.llm.reset_prefix_cache()

    def generate_from_ids(self, encoded: Sequence[list[int]], params: SamplingParams) -> list[list[int]]:
        """:meth:`generate_ids` for prompts already templated and tokenized."""
        requests = [{"prompt_token_ids": list(ids)} for ids in encoded]
        sampling = [self._sampling_params(params, i) for i in range(len(requests))]
        outputs = self.llm.generate(requests, sampling, use_tqdm=self.progress)  # in the order of `requests`
        eos = self.tokenizer.eos_token_id
        results = []
        for output in outputs:
            tokens = list(output.outputs[0].token_ids)
            results.append(tokens[: tokens.index(eos) + 1] if eos in tokens else tokens)
        return results

    def _sampling_params(self, params: SamplingParams, index: int) -> Any:
        sample = params.temperature > 0
        return self.vllm.SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature if sample else 0.0,
            top_p=params.top_p if sample else 1.0,
            seed=params.seed + index if sample else None,
            top_k=params.top_k if sample and params.top_k else -1,
            stop=list(params.stop) or None,
        )


def in_process_vllm_env() -> None:
    """Keep vLLM's engine in this process so that :meth:`VLLMEngine.load_weights` can reach the model."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def _tokenizer_folder(tokenizer: Any) -> str | None:
    """The folder ``tokenizer`` was loaded from, so that vLLM's detokenizer (for stop strings) matches ours."""
    source = getattr(tokenizer, "name_or_path", "")
    return source if source and Path(source).is_dir() else None
