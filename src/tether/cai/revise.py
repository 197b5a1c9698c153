"""Critique and revise (Bai et al. 2022, "Constitutional AI", section 3.1), a batch of prompts at a time.

For each prompt the generator writes a response. Then, for each of N rounds, one principle is picked, the
critic is sent the critique template (the conversation so far as ``Human: ...`` / ``Assistant: ...`` turns,
then ``CritiqueRequest: ...`` and ``Critique:``) as one user message, and then the revision template (the
same, with the critique, then ``RevisionRequest: ...`` and ``Revision:``). Each round critiques the current
response: the latest usable revision, or the original while there is none (:mod:`tether.cai.usable` says
what is usable; a round whose critique is unusable asks for no revision). The critic writes both critiques
and revisions, as the one model does in the paper; by default it is the generator.

Principles: each prompt gets its own random order of all principles, from ``random.Random(f"{seed}:{id}")``,
and round r uses the r-th (cycling when there are more rounds than principles), so a prompt's principles
depend only on the seed and its id, never on batching or resuming, and no principle repeats within a chain
until all have been used (the paper samples one per round).

Stop strings cut a critic that goes on to write the next turn of the transcript (``\\nHuman:``,
``\\nCritiqueRequest:`` ...). A failed request (a :class:`~tether.targets.Reply` with an error) ends its
chain with ``error`` set; the chain is stored for audit and redone by ``--resume``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tether.cai.constitution import ROLE_LABELS, Constitution, Principle
from tether.cai.prompts import CaiPrompt
from tether.cai.usable import clean, critique_problem, revision_problem
from tether.data.records import Message
from tether.generation import SamplingParams

STOPS = ("\nHuman:", "\nAssistant:", "\nCritiqueRequest:", "\nCritique:", "\nRevisionRequest:", "\nRevision:")
"""Where a critique or revision ends: the critic going on to write the transcript's next turn."""


@dataclass(frozen=True)
class ReviseSettings:
    rounds: int = 2
    max_new_tokens: int = 256
    critique_max_new_tokens: int = 160
    temperature: float = 0.0
    seed: int = 0
    max_growth: float = 4.0

    def params(self, stage: int, *, critique: bool = False, stops: tuple[str, ...] = ()) -> SamplingParams:
        """Stage 0 is the response; round r's critique is stage 2r+1, its revision 2r+2 (distinct seeds)."""
        tokens = self.critique_max_new_tokens if critique else self.max_new_tokens
        return SamplingParams(max_new_tokens=tokens, temperature=self.temperature, seed=self.seed + stage, stop=stops)


def render_conversation(messages: Sequence[Message]) -> str:
    """``Human: ...`` / ``Assistant: ...`` turns separated by blank lines."""
    return "\n\n".join(f"{ROLE_LABELS[m.role]}: {m.content}" for m in messages)


def principle_order(principles: Sequence[Principle], seed: int, prompt_id: str) -> list[Principle]:
    """This prompt's order of the principles (see the module docstring)."""
    return random.Random(f"{seed}:{prompt_id}").sample(list(principles), len(principles))


def critique_prompt(constitution: Constitution, conversation: str, principle: Principle) -> str:
    return constitution.critique_template.format(
        conversation=conversation, critique_request=principle.critique_request.strip()
    )


def revision_prompt(constitution: Constitution, conversation: str, principle: Principle, critique: str) -> str:
    return constitution.revision_template.format(
        conversation=conversation,
        critique_request=principle.critique_request.strip(),
        critique=critique,
        revision_request=principle.revision_request.strip(),
    )


@dataclass
class _Chain:
    prompt: CaiPrompt
    response: str
    order: list[Principle]
    final: str = ""
    final_from: int = 0
    error: str | None = None

    def __post_init__(self) -> None:
        self.final = self.response
        self.rounds: list[dict[str, Any]] = []

    def conversation(self) -> str:
        return render_conversation([*self.prompt.messages, Message(role="assistant", content=self.final)])

    def record(self, extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.prompt.id,
            "prompt": [m.model_dump() for m in self.prompt.messages],
            "prompt_source": self.prompt.source,
            "category": self.prompt.category,
            "response": self.response,
            "rounds": self.rounds,
            "final": self.final,
            "final_from": self.final_from,
            "error": self.error,
            **extra,
        }


def _ask(target: Any, prompts: Sequence[str], params: SamplingParams) -> list[Any]:
    return target.generate([[Message(role="user", content=p)] for p in prompts], params)


def revise_batch(
    prompts: Sequence[CaiPrompt],
    *,
    generator: Any,
    critic: Any,
    constitution: Constitution,
    settings: ReviseSettings,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One chain record per prompt, in order (``extra``: provenance added to each record).

    A record: ``id``, ``prompt`` (messages), ``prompt_source`` (file:line), ``category``, ``response`` (the
    original), ``rounds`` (each: ``round``, ``principle``, ``critique_prompt``, ``critique``,
    ``revision_prompt``, ``revision``, ``usable``, ``reason``; the last four null or false where the round
    stopped early), ``final`` (the last usable revision, else the original), ``final_from`` (its round, 0 for
    the original) and ``error`` (a failed request, which ended the chain).
    """
    replies = generator.generate([list(p.messages) for p in prompts], settings.params(0))
    chains = []
    for prompt, reply in zip(prompts, replies, strict=True):
        chain = _Chain(prompt, reply.text.strip(), principle_order(constitution.principles, settings.seed, prompt.id))
        chain.error = f"response: {reply.error}" if reply.error else None
        chains.append(chain)
    for number in range(1, settings.rounds + 1):
        active = [c for c in chains if c.error is None]
        if not active:
            break
        steps = []
        for chain in active:
            principle = chain.order[(number - 1) % len(chain.order)]
            asked = critique_prompt(constitution, chain.conversation(), principle)
            steps.append((chain, principle, asked))
            chain.rounds.append({"round": number, "principle": principle.id, "critique_prompt": asked})
        critiques = _ask(critic, [s[2] for s in steps], settings.params(2 * number - 1, critique=True, stops=STOPS))
        revise = []
        for (chain, principle, _), reply in zip(steps, critiques, strict=True):
            step = chain.rounds[-1]
            step.update(critique=clean(reply.text), revision_prompt=None, revision=None, usable=False, reason=None)
            if reply.error:
                chain.error = f"critique (round {number}): {reply.error}"
            elif problem := critique_problem(step["critique"]):
                step["reason"] = problem
            else:
                step["revision_prompt"] = revision_prompt(
                    constitution, chain.conversation(), principle, step["critique"]
                )
                revise.append((chain, principle))
        wanted = [c.rounds[-1]["revision_prompt"] for c, _ in revise]
        revisions = _ask(critic, wanted, settings.params(2 * number, stops=STOPS)) if wanted else []
        for (chain, principle), reply in zip(revise, revisions, strict=True):
            step = chain.rounds[-1]
            step["revision"] = clean(reply.text)
            if reply.error:
                chain.error = f"revision (round {number}): {reply.error}"
                continue
            step["reason"] = revision_problem(
                step["revision"],
                revised=chain.final,
                prompt=chain.prompt.text,
                critique=step["critique"],
                revision_request=principle.revision_request,
                max_growth=settings.max_growth,
            )
            step["usable"] = step["reason"] is None
            if step["usable"]:
                chain.final, chain.final_from = step["revision"], number
    return [c.record(extra or {}) for c in chains]
