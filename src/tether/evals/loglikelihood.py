"""Log-likelihood of each answer option after a shared context, computing the context once.

For a batch of questions, the contexts run once (left-padded) with the KV cache on; the cache is then
copied to one row per option (``DynamicCache.batch_select_indices``) and only the option tokens run.
The first option token is scored from the context's last logits. Options therefore never pay for the
context again: for BBQ (3 options after a context of about 80 tokens) that is about a third of the work
of scoring every (context, option) sequence separately.

Tokenization follows lm-evaluation-harness (``HFLM._encode_pair``): trailing spaces of the context move
to the continuation, ``context + continuation`` is tokenized whole and the continuation is what follows
the context's own tokens; no special tokens are added. So the token counts, and the accuracies, match.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from tether.data.samples import ChoiceSample


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-evaluation-harness splits them."""
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    return ctx, whole[len(ctx) :]


@torch.inference_mode()
def option_loglikelihoods(
    model: Any,
    tokenizer: Any,
    samples: Sequence[ChoiceSample],
    *,
    batch_size: int = 16,
    on_batch: Callable[[list[int], list[list[tuple[float, int]]]], None] | None = None,
) -> list[list[tuple[float, int]]]:
    """Per sample, per option: (sum of the option tokens' log-probs, number of option tokens).

    ``on_batch(indices, results)`` is called after each batch (to save progress).
    """
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = []
    for s in samples:
        pairs = [encode_pair(tokenizer, s.context, " " + c if not c.startswith(" ") else c) for c in s.choices]
        ctx = pairs[0][0]
        if any(p[0] != ctx for p in pairs) or not ctx:
            raise ValueError(f"{s.id}: options change the context's tokens; cannot share the prefix")
        encoded.append((ctx, [p[1] for p in pairs]))
    order = sorted(range(len(samples)), key=lambda i: len(encoded[i][0]))
    results: list[list[tuple[float, int]] | None] = [None] * len(samples)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch_results = _score_batch(model, [encoded[i] for i in idx], pad, device)
            for i, r in zip(idx, batch_results, strict=True):
                results[i] = r
            if on_batch is not None:
                on_batch(idx, batch_results)
    finally:
        model.train(was_training)
    return [r for r in results if r is not None]


def _score_batch(
    model: Any, items: list[tuple[list[int], list[list[int]]]], pad: int, device
) -> list[list[tuple[float, int]]]:
    contexts = [ctx for ctx, _ in items]
    width = max(len(c) for c in contexts)
    ctx_ids = torch.full((len(items), width), pad, dtype=torch.long)
    ctx_mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, ctx in enumerate(contexts):
        ctx_ids[row, width - len(ctx) :] = torch.tensor(ctx)
        ctx_mask[row, width - len(ctx) :] = 1
    positions = (ctx_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=ctx_ids.to(device),
        attention_mask=ctx_mask.to(device),
        position_ids=positions.to(device),
        use_cache=True,
        logits_to_keep=1,
    )
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
    owner = [row for row, (_, options) in enumerate(items) for _ in options]
    options = [opt for _, opts in items for opt in opts]
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    cache.batch_select_indices(torch.tensor(owner, device=device))
    length = max(len(o) for o in options)
    opt_ids = torch.full((len(options), length), pad, dtype=torch.long)
    opt_mask = torch.zeros((len(options), length), dtype=torch.long)
    for row, opt in enumerate(options):
        opt_ids[row, : len(opt)] = torch.tensor(opt)
        opt_mask[row, : len(opt)] = 1
    owner_t = torch.tensor(owner)
    mask = torch.cat([ctx_mask[owner_t], opt_mask], dim=1)
    pos = ctx_mask.sum(-1)[owner_t, None] + torch.arange(length)[None, :]
    logits = model(
        input_ids=opt_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=pos.to(device),
        use_cache=True,
        **{_cache_argument(model): cache},
    ).logits.float()
    scores = first[owner_t.to(device)].gather(-1, opt_ids[:, :1].to(device)).squeeze(-1)
    if length > 1:
        rest = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, opt_ids[:, 1:, None].to(device)).squeeze(-1)
        scores = scores + (rest * opt_mask[:, 1:].to(device)).sum(-1)
    flat = [(float(s), len(o)) for s, o in zip(scores.cpu().tolist(), options, strict=True)]
    out_rows, k = [], 0
    for _, opts in items:
        out_rows.append(flat[k : k + len(opts)])
        k += len(opts)
    return out_rows


def _cache_argument(model: Any) -> str:
    """``cache`` (transformers 5.2x renamed it; ``past_key_values`` warns there) or, on models whose forward does
    not name it (older transformers), ``past_key_values``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
