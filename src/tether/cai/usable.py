"""Is a critique or revision usable? A weak critic (the embedded 135M model) often writes ones that are not.

Cheap text checks, no model. Texts are compared after :func:`normal` (NFKC, lower case, whitespace
collapsed), once :func:`clean` has removed a ``Critique:`` / ``Revision:`` label the model repeated. A
critique is unusable when it is

- ``critique_empty``: empty;
- ``critique_refused``: it opens by declining the critique request itself ("I'm sorry, I can't help with
  that"); a critique that quotes the assistant's refusal further on is fine;
- ``critique_repetitive``: a loop (see ``repetitive`` below).

Its round then asks for no revision. A revision is unusable when it is

- ``empty``: empty;
- ``identical``: the response it was asked to revise;
- ``echo``: a copy of the human's prompt, the revision request or the critique: difflib ratio >= 0.9, or
  at least half of the revision (and 30 characters or more) is one block copied from it;
- ``repetitive``: a loop: of 24 words or more, under half of its word 4-grams are distinct;
- ``too_long``: longer than ``max_growth`` times the revised response, or than 400 characters if that is more;
- ``commentary``: it talks about the response instead of being one ("The original response was ...",
  "The human is ..."), the commonest failure of a small reviser;
- ``refused_task``: it opens by declining to rewrite ("I can't revise this"). A revision that refuses the
  *human's* request is not flagged: that is often the right revision of an answer to a harmful request.

These catch broken text, not bad judgement: a fluent revision that still helps with harm passes (AI
preference labels and judges are for that). A target's failed request is not a usability problem: the
chain records the error and ``--resume`` redoes it.
"""

from __future__ import annotations

import re
import unicodedata
from difflib import SequenceMatcher

CRITIQUE_REASONS = ("critique_empty", "critique_refused", "critique_repetitive")
REVISION_REASONS = ("empty", "identical", "echo", "repetitive", "too_long", "commentary", "refused_task")
ECHO_RATIO = 0.9
ECHO_BLOCK = 0.5
MIN_ECHO_CHARS = 30
MIN_LONG_CHARS = 400
LOOP_WORDS = 24
LOOP_DISTINCT = 0.5

_DECLINE = (
    r"^(i'm sorry,? |i am sorry,? |sorry,? )?(but )?"
    r"(i can't|i cannot|i can not|i won't|i will not|i'm unable to|i am unable to|i'm not able to|i am not able to)"
)
_CRITIQUE_REFUSAL = re.compile(_DECLINE + r"[^.!?\n]{0,30}\b(help|assist|critique|comply|do that|provide|fulfil)\b")
_TASK_REFUSAL = re.compile(_DECLINE + r"[^.!?\n]{0,30}\b(rewrite|revise|edit|critique|do this task|do that)\b")
_COMMENTARY = re.compile(
    r"^((the|this) (original |assistant's |assistant |ai's |revised |last |previous |above )*(response|reply|revision)"
    r"|the (human|user|assistant)('s)?)\b"
)
_LABEL = re.compile(r"^[\s*_#]*(critique|revision|revised response)[\s*_]*:[\s*_]*", re.IGNORECASE)


def normal(text: str) -> str:
    """NFKC, lower case, straight apostrophes, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").lower()
    return " ".join(text.split())


def clean(text: str) -> str:
    """The text stripped, without a leading ``Critique:`` / ``Revision:`` label that the model repeated."""
    return _LABEL.sub("", text.strip(), count=1).strip()


def _opening(text: str) -> str:
    return normal(text)[:160]


def repetitive(text: str) -> bool:
    """A loop: at least :data:`LOOP_WORDS` words, and under :data:`LOOP_DISTINCT` of its word 4-grams distinct."""
    words = normal(text).split()
    if len(words) < LOOP_WORDS:
        return False
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return len(set(grams)) < LOOP_DISTINCT * len(grams)


def critique_problem(critique: str) -> str | None:
    """Why ``critique`` (already :func:`clean`) is unusable, or None."""
    if not critique.strip():
        return "critique_empty"
    if _CRITIQUE_REFUSAL.search(_opening(critique)):
        return "critique_refused"
    if repetitive(critique):
        return "critique_repetitive"
    return None


def _copies(text: str, other: str) -> bool:
    """``text`` (normalised) is ``other`` (normalised), near enough, or mostly one block copied from it."""
    if not text or not other:
        return False
    matcher = SequenceMatcher(None, text, other, autojunk=False)
    if text == other or matcher.ratio() >= ECHO_RATIO:
        return True
    block = matcher.find_longest_match(0, len(text), 0, len(other)).size
    return block >= MIN_ECHO_CHARS and block >= ECHO_BLOCK * len(text)


def revision_problem(
    revision: str, *, revised: str, prompt: str, critique: str, revision_request: str, max_growth: float
) -> str | None:
    """Why ``revision`` (already :func:`clean`) of the response ``revised`` is unusable, or None."""
    if not revision.strip():
        return "empty"
    text = normal(revision)
    if text == normal(revised):
        return "identical"
    if any(_copies(text, normal(other)) for other in (prompt, revision_request, critique)):
        return "echo"
    if repetitive(revision):
        return "repetitive"
    if len(revision) > max(max_growth * len(revised), MIN_LONG_CHARS):
        return "too_long"
    opening = _opening(revision)
    if _COMMENTARY.match(opening):
        return "commentary"
    if _TASK_REFUSAL.search(opening):
        return "refused_task"
    return None
