"""Residual-stream activations (and last-position logits) of chat-templated instructions, batched.

Instructions are rendered in the tokenizer's chat template with the assistant turn opened, exactly as
:class:`~tether.generation.engine.GenerationEngine` writes them. Batches are left-padded, so the last ``k``
positions of every row are the prompt's own last ``k`` tokens; position ids are counted from each row's first
real token (``cumsum(mask) - 1``), so a padded row computes what it computes alone. The *post-instruction*
tokens are those the template writes after the instruction (``<|im_end|>\\n<|im_start|>assistant\\n``, 6 tokens,
for SmolLM2), the positions Arditi et al. (2024) take refusal-direction candidates from.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch

from tether.data.tokenization import ChatEncoder
from tether.errors import UsageError
from tether.generation.engine import chat_prompt_ids
from tether.interp.hooks import Edit, editing, recording
from tether.interp.sites import Site
from tether.report.progress import steps

_MARK = "\ue000TETHER-INSTRUCTION\ue000"


def instruction_ids(tokenizer: Any, instructions: Sequence[str], *, max_chars: int | None = None) -> list[list[int]]:
    """Token ids of each instruction as a user turn in the chat template, assistant turn opened
    (``max_chars``: cut each instruction to its first ``max_chars`` characters first)."""
    encoder = ChatEncoder(tokenizer)
    return [chat_prompt_ids(encoder, text if max_chars is None else text[:max_chars]) for text in instructions]


def post_instruction_ids(tokenizer: Any) -> list[int]:
    """The token ids the chat template writes after the instruction (through the opened assistant turn)."""
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError("the tokenizer has no chat template, so there are no post-instruction tokens; use position 1")
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": _MARK}], tokenize=False, add_generation_prompt=True
    )
    tail = text.split(_MARK, 1)[1]
    return list(tokenizer(tail, add_special_tokens=False)["input_ids"])


@dataclass
class Padded:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor

    def to(self, device: Any) -> Padded:
        return Padded(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device))

    def kwargs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids}


def pad_left(rows: Sequence[Sequence[int]], pad_id: int) -> Padded:
    """Left-padded ids, the attention mask and position ids counted from each row's first real token."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return Padded(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0))


@dataclass
class Forward:
    """What :func:`forward` returns: activations ``{site: [n, last, d]}`` (float32, CPU) and, when asked for,
    the logits at each prompt's last position ``[n, vocab]`` (float32, CPU)."""

    activations: dict[Site, torch.Tensor]
    logits: torch.Tensor | None


def pad_id_of(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


@torch.no_grad()
def forward(
    model: Any,
    rows: Sequence[Sequence[int]],
    *,
    pad_id: int,
    sites: Sequence[Site] = (),
    last: int = 1,
    logits: bool = False,
    edits: Sequence[tuple[Site, Edit]] = (),
    batch_size: int = 16,
    console: Any = None,
    label: str = "forward",
) -> Forward:
    """Run ``rows`` (token id lists) through ``model`` in left-padded batches under ``edits``; keep each site's
    activation at the last ``last`` positions and (``logits``) the last position's logits. Recording sees the
    edited activations (edits are attached first). A progress line/bar is shown when ``console`` is given."""
    if last < 1 or any(len(r) < last for r in rows):
        raise UsageError(f"every input needs at least {last} tokens for the last {last} positions")
    device = next(model.parameters()).device
    kept: dict[Site, list[torch.Tensor]] = {s: [] for s in sites}
    last_logits: list[torch.Tensor] = []
    was_training = model.training
    model.eval()
    batches = [list(range(i, min(i + batch_size, len(rows)))) for i in range(0, len(rows), batch_size)]
    try:
        with steps(console, label, len(rows), enabled=console is not None) as progress, ExitStack() as stack:
            stack.enter_context(editing(model, edits))
            seen = stack.enter_context(recording(model, list(sites)))
            for batch in batches:
                padded = pad_left([rows[i] for i in batch], pad_id).to(device)
                out = model(**padded.kwargs(), logits_to_keep=1, use_cache=False)
                for site in sites:
                    kept[site].append(seen[site][:, -last:, :].float().cpu())
                if logits:
                    last_logits.append(out.logits[:, -1, :].float().cpu())
                progress.advance(len(batch))
    finally:
        model.train(was_training)
    return Forward(
        {s: torch.cat(v) for s, v in kept.items()} if rows else {},
        torch.cat(last_logits) if logits and rows else None,
    )


def residuals(
    model: Any,
    tokenizer: Any,
    instructions: Sequence[str],
    sites: Sequence[Site],
    *,
    last: int = 1,
    batch_size: int = 16,
    console: Any = None,
) -> dict[Site, torch.Tensor]:
    """``{site: [n, last, d]}``: each site's activation at the last ``last`` tokens of each chat-templated
    instruction (``last = len(post_instruction_ids(tokenizer))`` gives the post-instruction positions)."""
    rows = instruction_ids(tokenizer, instructions)
    return forward(
        model, rows, pad_id=pad_id_of(tokenizer), sites=sites, last=last, batch_size=batch_size, console=console
    ).activations


def read_instructions(path: str, *, limit: int | None = None, seed: int = 0) -> list[str]:
    """The texts of ``path`` (:func:`tether.interp.texts.read_texts`), a seeded random subsample of ``limit``
    of them in file order when the file holds more."""
    import random

    from tether.interp.texts import read_texts

    texts = [t.text for t in read_texts(path)]
    if limit is None or limit >= len(texts):
        return texts
    keep = sorted(random.Random(seed).sample(range(len(texts)), limit))
    return [texts[i] for i in keep]


def read_disjoint_instructions(path: str, limits: Sequence[int], *, seed: int = 0) -> list[list[str]]:
    """Disjoint seeded random subsamples of the texts of ``path``, of ``limits[i]`` texts each, each in file
    order: one seeded permutation cut into consecutive slices, so no text is in two of them. A file too short
    for all of them gives the later ones fewer texts (an empty slice when none are left)."""
    import random

    from tether.interp.texts import read_texts

    texts = [t.text for t in read_texts(path)]
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    slices, start = [], 0
    for limit in limits:
        slices.append([texts[i] for i in sorted(order[start : start + limit])])
        start += limit
    return slices


def fingerprint(texts: Sequence[str]) -> str:
    """A short hash of a list of texts (a stage's output is reused only for the same inputs)."""
    import hashlib

    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return f"{len(texts)}:{digest.hexdigest()[:16]}"
