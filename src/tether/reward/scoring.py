"""Score (prompt, response) pairs with a trained reward model, in length-sorted batches without gradients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tether.data.batching import collate
from tether.data.pair_encoding import encode_completion
from tether.data.records import Message
from tether.data.tokenization import ChatEncoder, TokenizedExample
from tether.models.reward import sequence_rewards


def fit(prompt_ids: list[int], completion_ids: list[int], max_length: int) -> list[int]:
    """Prompt + completion within ``max_length``: the prompt keeps its end (at most half the room when the
    completion needs it), the completion its start."""
    room_for_prompt = max(max_length // 2, max_length - len(completion_ids))
    prompt = prompt_ids[-room_for_prompt:] if prompt_ids else []
    return (prompt + completion_ids)[:max_length]


@torch.no_grad()
def score_sequences(
    model: Any, sequences: Sequence[list[int]], *, pad_id: int, batch_size: int = 16, progress: bool = False
) -> torch.Tensor:
    """The reward of each token sequence ``[N]`` (fp32, in input order)."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scores = torch.empty(len(sequences), dtype=torch.float32)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    from tether.report.progress import track  # a bar on a terminal, a line every tenth in a log file

    iterator = track(batches, "score", enabled=progress)
    try:
        for index in iterator:
            examples = [TokenizedExample(list(sequences[i]), list(sequences[i])) for i in index]
            batch = collate(examples, pad_id)
            rewards = sequence_rewards(model, {k: v.to(device) for k, v in batch.items()})
            scores[torch.tensor(index)] = rewards.cpu()
    finally:
        model.train(was_training)
    return scores


class RewardModelScorer:
    """``score(prompts, responses) -> [float]`` with a reward model and its own tokenizer and chat template."""

    def __init__(self, model: Any, tokenizer: Any, *, max_length: int = 1024, batch_size: int = 16) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.encoder = ChatEncoder(tokenizer)
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(
        cls, spec: str, *, dtype: str = "float32", trust_remote_code: bool = False, device: Any = None, **kwargs: Any
    ):
        from tether.models.loading import load_tokenizer
        from tether.models.reward import load_scalar_model

        tokenizer = load_tokenizer(spec, trust_remote_code=trust_remote_code)
        model = load_scalar_model(
            spec, pad_token_id=tokenizer.pad_token_id, dtype=dtype, trust_remote_code=trust_remote_code
        )
        if device is not None:
            model.to(device)
        return cls(model.eval(), tokenizer, **kwargs)

    def encode(self, prompt: str | list[Message], response: str) -> list[int]:
        prompt_ids, completion_ids = encode_completion(self.encoder, prompt, response)
        return fit(prompt_ids, completion_ids, self.max_length)

    def score(self, prompts: Sequence[str | list[Message]], responses: Sequence[str]) -> list[float]:
        sequences = [self.encode(p, r) for p, r in zip(prompts, responses, strict=True)]
        return score_sequences(
            self.model, sequences, pad_id=self.tokenizer.pad_token_id, batch_size=self.batch_size
        ).tolist()
