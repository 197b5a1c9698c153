"""Chain-of-Verification (Dhuliawala et al. 2023, "Chain-of-Verification Reduces Hallucination in Large
Language Models", arXiv:2309.11495) as a target that wraps any other.

For each chat: (1) the wrapped target drafts an answer; (2) it plans up to ``max_questions`` short
verification questions about the facts the draft relies on; (3) each question is answered on its own, in a
fresh chat that does not show the draft (the paper's "factored" variant, so the draft's errors are not
copied into the checks); (4) it writes the final answer from the question, the draft and the verification
answers. Every step is one batched ``generate`` call over all chats, so a batch of n chats with q questions
each costs 3 + q/n calls' worth of batches, not 4n. A failed request at any step fails that chat's reply
(with the step named); a plan with no parseable question keeps the draft.

The method helps a model that can check its own facts; a 135M model mostly cannot, so use it against a
stronger endpoint (``--endpoint``) to see its benefit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from tether.data.records import Message
from tether.generation import SamplingParams
from tether.targets import Chat, Reply, Target

PLAN = (
    "Question: {question}\nDraft answer: {draft}\n\nWrite up to {n} short questions, one per line, that check "
    "the facts this draft answer relies on. Write only the questions."
)
FINAL = (
    "Question: {question}\nDraft answer: {draft}\n\nVerification questions and their answers:\n{checks}\n\n"
    "Using the verification answers, write a corrected final answer to the question. Answer only the question."
)
_NUMBERING = re.compile(r"^\s*(?:[-*\u2022]|\(?\d+[.):]|Q\d*[.:])\s*")


def parse_questions(plan: str, limit: int) -> list[str]:
    """The plan's non-empty lines with list markers removed ("1.", "-", "Q1:"), at most ``limit``."""
    questions = [_NUMBERING.sub("", line).strip() for line in plan.splitlines()]
    return [q for q in questions if q][:limit]


@dataclass
class Trace:
    """What one chat went through: the draft, the questions, their answers, the final answer."""

    draft: str
    questions: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    final: str = ""
    error: str | None = None


def _last_user(chat: Chat) -> str:
    return next((m.content for m in reversed(chat) if m.role == "user"), "")


def _user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


class VerifiedTarget:
    """A :class:`~tether.targets.Target` that answers through Chain-of-Verification (module docstring)."""

    def __init__(self, inner: Target, *, max_questions: int = 3) -> None:
        self.inner = inner
        self.max_questions = max_questions
        self.name = f"cove({inner.name})"
        self.traces: list[Trace] = []
        """The traces of the last :meth:`generate` call, in order."""

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Reply]:
        drafts = self.inner.generate(chats, params)
        traces = [Trace(d.text, error=f"draft: {d.error}" if d.error else None) for d in drafts]
        live = [i for i, t in enumerate(traces) if t.error is None]
        plans = self.inner.generate(
            [
                _user(PLAN.format(question=_last_user(chats[i]), draft=traces[i].draft, n=self.max_questions))
                for i in live
            ],
            params,
        )
        for i, plan in zip(live, plans, strict=True):
            if plan.error:
                traces[i].error = f"plan: {plan.error}"
            else:
                traces[i].questions = parse_questions(plan.text, self.max_questions)
        asked = [(i, q) for i in live if traces[i].error is None for q in traces[i].questions]
        checks = self.inner.generate([_user(q) for _, q in asked], params) if asked else []
        for (i, _), check in zip(asked, checks, strict=True):
            if check.error and traces[i].error is None:
                traces[i].error = f"verification: {check.error}"
            traces[i].answers.append(check.text)
        revise = [i for i in live if traces[i].error is None and traces[i].questions]
        finals = (
            self.inner.generate(
                [
                    _user(
                        FINAL.format(
                            question=_last_user(chats[i]),
                            draft=traces[i].draft,
                            checks="\n".join(
                                f"Q: {q}\nA: {a}" for q, a in zip(traces[i].questions, traces[i].answers, strict=True)
                            ),
                        )
                    )
                    for i in revise
                ],
                params,
            )
            if revise
            else []
        )
        for i, final in zip(revise, finals, strict=True):
            traces[i].final, traces[i].error = final.text, (f"final: {final.error}" if final.error else None)
        for trace in traces:
            if trace.error is None and not trace.questions:
                trace.final = trace.draft  # nothing to verify: the draft stands
        self.traces = traces
        return [Reply("", error=t.error) if t.error else Reply(t.final) for t in traces]


def verified_if(target: Target, enabled: bool, *, max_questions: int = 3) -> Target:
    """``target`` wrapped in :class:`VerifiedTarget` when ``enabled`` (``--chain-of-verification``)."""
    return VerifiedTarget(target, max_questions=max_questions) if enabled else target
