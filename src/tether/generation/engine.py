"""Batched generation with Hugging Face ``generate``: left padding, KV cache, seeded sampling.

Prompts are chat-templated (when the tokenizer has a template) and sorted by length so that each
batch pads little; results come back in the caller's order. On a CPU, decoding is bound by reading the
weights once per step (about 0.1 s for the 135M-parameter default in fp32), almost independent of the
batch size, so large batches are the cheap way to go fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tether.data.records import Message
from tether.data.tokenization import ChatEncoder


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings; temperature 0 means greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int | None = None
    """Sample among the k most likely tokens; None keeps the model's default (transformers: 50), 0 turns it
    off, which exact on-policy RL needs (the update assumes samples from the full softmax)."""
    seed: int = 0
    stop: tuple[str, ...] = ()
    """Strings that end a completion; the completion is cut before the first one."""


class GenerationEngine:
    """Generate answers to chat prompts in batches."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64, progress: bool = False) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.encoder = ChatEncoder(tokenizer)
        self.batch_size = batch_size
        self.progress = progress

    def prompt_ids(self, prompt: str | Sequence[Message]) -> list[int]:
        return chat_prompt_ids(self.encoder, prompt)

    def generate(self, prompts: Sequence[str | Sequence[Message]], params: SamplingParams) -> list[str]:
        """One completion per prompt, in order, cut at the first stop string."""
        return decode_completions(self.tokenizer, self.generate_ids(prompts, params), params.stop)

    def generate_ids(self, prompts: Sequence[str | Sequence[Message]], params: SamplingParams) -> list[list[int]]:
        """Generated token ids per prompt, in order, without padding and ending at the first EOS."""
        return self.generate_from_ids([self.prompt_ids(p) for p in prompts], params)

    @torch.no_grad()
    def generate_from_ids(self, encoded: Sequence[list[int]], params: SamplingParams) -> list[list[int]]:
        """:meth:`generate_ids` for prompts already templated and tokenized."""
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        results: list[list[int]] = [[] for _ in encoded]
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        from rich.console import Console

        from tether.report.progress import steps  # a bar on a terminal, a line every tenth in a log file

        try:
            with steps(Console(), "generate", len(encoded), enabled=self.progress) as progress:
                for number, batch in enumerate(batches):
                    self._generate_batch(encoded, batch, number, params, results, device)
                    progress.advance(len(batch))
        finally:
            self.model.train(was_training)
        return results

    def _generate_batch(
        self,
        encoded: Sequence[list[int]],
        batch: list[int],
        number: int,
        params: SamplingParams,
        results: list[list[int]],
        device: Any,
    ) -> None:
        """Left-pad one batch of prompts, generate, and store each prompt's new tokens (up to its first EOS)."""
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            n = len(encoded[i])
            ids[row, width - n :] = torch.tensor(encoded[i])
            mask[row, width - n :] = 1
        out = self.model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), **self._generate_kwargs(params, number)
        )
        for row, i in enumerate(batch):
            tokens = out[row, width:].tolist()
            results[i] = tokens[: tokens.index(eos) + 1] if eos in tokens else tokens

    def _generate_kwargs(self, params: SamplingParams, batch_number: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if params.temperature > 0:
            torch.manual_seed(params.seed + batch_number)  # each batch's draws depend only on the seed
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            if params.top_k is not None:
                kwargs["top_k"] = params.top_k
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs


def chat_prompt_ids(encoder: ChatEncoder, prompt: str | Sequence[Message]) -> list[int]:
    """Token ids of a prompt (a string is one user message) with the chat template's generation prompt.

    A chat that ends with an assistant message is a *prefill*: the answer starts with that text and the
    model continues it (the returned completion is only the continuation).
    """
    messages = [Message(role="user", content=prompt)] if isinstance(prompt, str) else list(prompt)
    if messages and messages[-1].role == "assistant":
        prefill = encoder.tokenizer(messages[-1].content, add_special_tokens=False)["input_ids"]
        return encoder.prompt_ids(messages[:-1]) + list(prefill)
    return encoder.prompt_ids(messages)


def decode_completions(tokenizer: Any, completions: Sequence[list[int]], stop: tuple[str, ...]) -> list[str]:
    """Decoded completions without special tokens, each cut at its first stop string and stripped."""
    return [_cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), stop).strip() for ids in completions]


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """``text`` up to (not including) the earliest stop string."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(cuts)] if cuts else text
