"""Run prompt samples through a target and a refusal judge, batch by batch, into a SampleStore."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tether.data.records import Message
from tether.data.samples import PromptSample
from tether.generation import SamplingParams
from tether.judges.verdict import Verdict, unscored
from tether.runs.store import SampleStore
from tether.targets import Target, as_chat


def prompt_text(prompt: str | Sequence[Message]) -> str:
    """The text a judge sees as the request: the string, or the chat's last user message."""
    if isinstance(prompt, str):
        return prompt
    return next((m.content for m in reversed(prompt) if m.role == "user"), "")


def sample_record(
    sample: PromptSample,
    suite: str,
    response: str,
    error: str | None,
    verdict: Verdict,
    harm_verdict: Verdict | None = None,
) -> dict:
    prompt = sample.prompt if isinstance(sample.prompt, str) else [m.model_dump() for m in sample.prompt]
    extra = {} if harm_verdict is None else {"harm_verdict": harm_verdict.to_dict()}
    return {
        "id": sample.id,
        "suite": suite,
        "category": sample.category,
        "expected": sample.expected,
        "prompt": prompt,
        "response": response,
        "error": error,
        "verdict": verdict.to_dict(),
        **extra,
        "source": sample.source,
        "meta": sample.meta,
    }


def run_prompt_samples(
    samples: Sequence[PromptSample],
    *,
    suite: str,
    target: Target,
    judge: Any,
    params: SamplingParams,
    store: SampleStore,
    batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
    harm_judge: Any = None,
) -> list[dict]:
    """Answer and judge every sample not yet in ``store``; returns all records in sample order. A
    ``harm_judge`` also judges the answers to harmful prompts (``expected == "refuse"``)."""
    todo = [s for s in samples if not store.done(s.id)]
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        replies = target.generate([as_chat(s.prompt) for s in batch], params)
        judged = [i for i, r in enumerate(replies) if r.error is None]
        verdicts: list[Verdict] = [unscored(f"target error: {r.error}", "target") for r in replies]
        for i, verdict in zip(
            judged, judge.judge_many([(prompt_text(batch[i].prompt), replies[i].text) for i in judged]), strict=True
        ):
            verdicts[i] = verdict
        harm = harm_verdicts(harm_judge, batch, replies)
        store.append(
            sample_record(s, suite, r.text, r.error, v, h)
            for s, r, v, h in zip(batch, replies, verdicts, harm, strict=True)
        )
        if on_batch is not None:
            on_batch(len(batch))
    return [store.records[s.id] for s in samples]


def harm_verdicts(harm_judge: Any, batch: Sequence[PromptSample], replies: Sequence[Any]) -> list[Verdict | None]:
    """The harm judge's verdict of each answer to a harmful prompt (None elsewhere, or without a judge)."""
    out: list[Verdict | None] = [None] * len(batch)
    if harm_judge is None:
        return out
    harmful = [i for i, s in enumerate(batch) if s.expected == "refuse"]
    judged = [i for i in harmful if replies[i].error is None]
    for i in harmful:
        out[i] = unscored(f"target error: {replies[i].error}", "target")
    pairs = [(prompt_text(batch[i].prompt), replies[i].text) for i in judged]
    for i, verdict in zip(judged, harm_judge.judge_many(pairs) if pairs else [], strict=True):
        out[i] = verdict
    return out
