"""AI preference labels (RLAIF): a judge says which of two responses better meets a principle.

The judge is sent one user message in the form of Bai et al. 2022 ("Constitutional AI", section 4.1)::

    Consider the following conversation between a human and an assistant:

    Human: ...

    <the principle's preference question>
    Options:
    (A) <response A>

    (B) <response B>

    Answer with A or B.

and its probability ``p_A`` that A is better is read

- from a **local** judge (:class:`LocalJudge`): the log-likelihoods of the option tokens " A" and " B" after
  the chat-templated prompt and ``The answer is:`` (scored by :func:`tether.evals.loglikelihood.option_loglikelihoods`,
  the multiple-choice machinery of the evals), ``p_A = sigma(ll_A - ll_B)``, the options' normalised probability
  (Bai et al.'s soft labels);
- from an **endpoint** (:class:`EndpointJudge`): the first answer token's ``top_logprobs`` where the server returns
  them (the A and B mass, normalised), else the answer text: "A" gives 1, "B" gives 0;
- from any other target (:class:`AnswerJudge`, e.g. a scripted one): the answer text.

A judge that cannot be read (a failed request, an answer that names neither option, no A or B token among
the top log-probabilities of an otherwise unreadable answer) gives an explicit *unscored* reading, never a guess.

Position bias (Lee et al. 2023, "RLAIF", section 3.1.1; Zheng et al. 2023): each pair (first, second) is asked
in both orders, A = first then A = second, and ``p(first better) = (p_A(order 1) + p_B(order 2)) / 2``, so a
judge that always answers "A" gives 0.5 for every pair. A pair is *position-biased* when the judge picks the
same letter in both orders (its choice of response flips with the order); :func:`judgement` records both
orders, the mean and the flag.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from tether.cai.constitution import Principle
from tether.cai.revise import render_conversation
from tether.data.records import Message

JUDGE_TEMPLATE = (
    "Consider the following conversation between a human and an assistant:\n\n{conversation}\n\n{question}\n"
    "Options:\n(A) {a}\n\n(B) {b}\n\nAnswer with A or B."
)
"""The judge's prompt (Bai et al. 2022, section 4.1): the conversation, the principle's preference question and
the two responses as options (A) and (B)."""

ANSWER_PREFIX = "The answer is:"
"""What a local judge's answer starts with; the option tokens " A" and " B" are scored after it."""

OPTIONS = ("A", "B")

_ANSWER = re.compile(
    r"^(?:the answer is|answer|option)?\s*[:\-]?\s*[(\[*]*\s*([AB])(?:[)\]*.,:;!]|\s*$|\s*\n)", re.IGNORECASE
)
"""An answer that opens by naming an option: "A", "(B)", "A.", "**A**", "The answer is: (B)", "Option A\n...".
"A good question ..." names no option (the letter must end the answer or its line, or be closed by punctuation)."""


@dataclass(frozen=True)
class Reading:
    """One judge answer: ``p_a`` (the probability that option A is better), or None with ``problem`` set."""

    p_a: float | None
    answer: str = ""
    problem: str | None = None
    failed: bool = False
    """The request itself failed (``--resume`` asks again), as opposed to an answer that could not be read."""


class Judge(Protocol):
    name: str

    def read(self, prompts: Sequence[str]) -> list[Reading]: ...


def judge_prompt(prompt: Sequence[Message], principle: Principle, a: str, b: str) -> str:
    return JUDGE_TEMPLATE.format(
        conversation=render_conversation(prompt), question=principle.preference_question.strip(), a=a, b=b
    )


def parse_answer(text: str) -> str | None:
    """ "A" or "B" where the answer opens by naming one option ("A", "(B)", "The answer is: A"), else None."""
    match = _ANSWER.match(text.strip())
    return match.group(1).upper() if match else None


def answer_reading(text: str) -> Reading:
    """A reading from the answer text alone: 1 for A, 0 for B, unscored when it names neither."""
    option = parse_answer(text)
    if option is None:
        return Reading(None, text, "the answer names neither A nor B")
    return Reading(1.0 if option == "A" else 0.0, text)


def top_logprob_reading(text: str, top: dict[str, float]) -> Reading | None:
    """A reading from the first answer token's top log-probabilities: the probability mass of tokens that are
    A (" A", "(A", "a" ...) against that of B, normalised; None when neither letter is among them."""
    mass = dict.fromkeys(OPTIONS, 0.0)
    for token, logprob in top.items():
        letter = token.strip(" (*[").upper()
        if letter in mass and logprob is not None and math.isfinite(logprob):
            mass[letter] += math.exp(logprob)
    total = mass["A"] + mass["B"]
    return Reading(mass["A"] / total, text) if total > 0 else None


class AnswerJudge:
    """Any :class:`~tether.targets.Target` as a judge, read from its answer text (greedy, a few tokens)."""

    def __init__(self, target: Any, *, max_new_tokens: int = 8) -> None:
        self.target = target
        self.name = target.name
        self.max_new_tokens = max_new_tokens

    def read(self, prompts: Sequence[str]) -> list[Reading]:
        from tether.generation import SamplingParams

        params = SamplingParams(max_new_tokens=self.max_new_tokens, temperature=0.0)
        replies = self.target.generate([[Message(role="user", content=p)] for p in prompts], params)
        return [
            Reading(None, "", f"request failed: {r.error}", failed=True) if r.error else answer_reading(r.text)
            for r in replies
        ]


class EndpointJudge:
    """An OpenAI-compatible endpoint as a judge: ``logprobs`` / ``top_logprobs`` of the first answer token where
    the server returns them, else the answer text."""

    def __init__(self, target: Any, *, max_new_tokens: int = 8, top_logprobs: int = 5) -> None:
        self.target = target  # a tether.targets.OpenAITarget: its client, model name and concurrency
        self.name = target.name
        self.max_new_tokens = max_new_tokens
        self.top_logprobs = top_logprobs

    def _one(self, prompt: str) -> Reading:
        try:
            reply = self.target.client.chat.completions.create(
                model=self.target.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=self.max_new_tokens,
                temperature=0.0,
                logprobs=True,
                top_logprobs=self.top_logprobs,
            )
            choice = reply.choices[0]
            text = choice.message.content or ""
        except Exception as err:  # transport, HTTP and API errors: an unscored reading with its reason
            return Reading(None, "", f"request failed: {type(err).__name__}: {err}"[:500], failed=True)
        content = getattr(getattr(choice, "logprobs", None), "content", None) or []
        if content:
            first = content[0]
            top = {alt.token: alt.logprob for alt in (first.top_logprobs or [])} or {first.token: first.logprob}
            reading = top_logprob_reading(text, top)
            if reading is not None:
                return reading
        return answer_reading(text)

    def read(self, prompts: Sequence[str]) -> list[Reading]:
        with ThreadPoolExecutor(max_workers=self.target.concurrency) as pool:
            return list(pool.map(self._one, prompts))


class LocalJudge:
    """A model on this machine as a judge, read from the log-likelihoods of the option tokens."""

    def __init__(self, target: Any, *, batch_size: int = 8) -> None:
        self.target = target  # a tether.targets.LocalTarget: loaded once, shared with the generator when the same
        self.name = target.name
        self.batch_size = batch_size

    def context(self, tokenizer: Any, prompt: str) -> str:
        """The chat-templated prompt with the generation prompt, then :data:`ANSWER_PREFIX`."""
        messages = [{"role": "user", "content": prompt}]
        if getattr(tokenizer, "chat_template", None):
            rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            rendered = f"{prompt}\n\n"
        return f"{rendered}{ANSWER_PREFIX}"

    def read(self, prompts: Sequence[str]) -> list[Reading]:
        from tether.data.samples import ChoiceSample
        from tether.evals.loglikelihood import option_loglikelihoods

        model, tokenizer = self.target.load()
        samples = [
            ChoiceSample(id=str(i), context=self.context(tokenizer, p), choices=OPTIONS, correct=(0,))
            for i, p in enumerate(prompts)
        ]
        scores = option_loglikelihoods(model, tokenizer, samples, batch_size=self.batch_size)
        readings = []
        for (ll_a, _), (ll_b, _) in scores:
            p_a = 1.0 / (1.0 + math.exp(ll_b - ll_a)) if ll_b - ll_a < 700 else 0.0
            readings.append(Reading(p_a, f"ll(A)={ll_a:.4f} ll(B)={ll_b:.4f}"))
        return readings


def choice(p_a: float | None) -> str | None:
    """The letter a reading picks: A above 1/2, B below, None at exactly 1/2 or unscored."""
    if p_a is None or p_a == 0.5:
        return None
    return "A" if p_a > 0.5 else "B"


def judgement(first_order: Reading, second_order: Reading) -> dict[str, Any]:
    """Both orders of one pair (order 1: A = first response; order 2: A = second) combined.

    ``p_first`` = (p_A(order 1) + (1 - p_A(order 2))) / 2; ``winner`` "first", "second" or "tie" (p_first = 1/2);
    ``position_biased``: the same letter in both orders; ``disagreement`` = |p_A(order 1) - p_B(order 2)|, how far
    the two orders' probabilities of the first response being better lie apart. Unscored (all None, ``unscored``
    the reason) when either order could not be read.
    """
    record: dict[str, Any] = {
        "p_a": [first_order.p_a, second_order.p_a],
        "answers": [first_order.answer, second_order.answer],
        "p_first": None,
        "winner": None,
        "position_biased": None,
        "disagreement": None,
        "unscored": None,
    }
    if first_order.p_a is None or second_order.p_a is None:
        bad = first_order if first_order.p_a is None else second_order
        order = 1 if bad is first_order else 2
        record["unscored"] = f"order {order}: {bad.problem}"
        return record
    p1, p2 = first_order.p_a, 1.0 - second_order.p_a
    p_first = (p1 + p2) / 2
    letters = choice(first_order.p_a), choice(second_order.p_a)
    record.update(
        p_first=p_first,
        winner="tie" if p_first == 0.5 else ("first" if p_first > 0.5 else "second"),
        position_biased=letters[0] is not None and letters[0] == letters[1],
        disagreement=abs(p1 - p2),
    )
    return record


def judge_pairs(
    judge: Judge, items: Sequence[tuple[Sequence[Message], Principle, str, str]]
) -> tuple[list[dict[str, Any]], bool]:
    """Judge each (prompt, principle, first, second) in both orders, in one call to the judge; returns the
    :func:`judgement` of each and whether any request failed (the caller redoes those on ``--resume``)."""
    prompts = []
    for prompt, principle, first, second in items:
        prompts += [judge_prompt(prompt, principle, first, second), judge_prompt(prompt, principle, second, first)]
    readings = judge.read(prompts) if prompts else []
    failed = any(r.failed for r in readings)
    return [judgement(readings[2 * i], readings[2 * i + 1]) for i in range(len(items))], failed
