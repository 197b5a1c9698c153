"""Prompt injection, direct (the user overrides the system's instructions) and indirect (instructions hidden
in a tool result or retrieved document, addressed to the model: Greshake et al. 2023).

Weighted cue patterns combined as a noisy-OR, ``score = 1 - prod(1 - w_i)`` over the cue families that match
(each family counts once). Families: overriding earlier instructions ("ignore all previous instructions",
Perez & Ribeiro 2022), extracting the system prompt, a new persona or mode ("you are now", "developer
mode"), fake role markers ("SYSTEM:", "<|im_start|>system", "[INST]"), notes addressed to the AI, and in a
``tool`` message any instruction to the model or an exfiltration request (send/forward the conversation or
data to an address). Cues inside a tool result weigh more: a document has no business instructing the
model. Where a prompt-injection classifier is available (``model``: a Hugging Face sequence-classification
folder or hub id, e.g. ``protectai/deberta-v3-base-prompt-injection-v2``), its probability is combined too.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field

from tether.config.options import Options
from tether.guard.detection import Span
from tether.guard.detectors.base import Detector, Sample, register

_I = re.IGNORECASE
CUES: dict[str, tuple[float, float, re.Pattern[str]]] = {
    # family: (weight in a user message, weight in a tool result or document, pattern)
    "override": (
        0.8,
        0.95,
        re.compile(
            r"\b(ignore|disregard|forget|override|bypass|skip)\b[^.\n]{0,40}?\b(all\s+|any\s+|the\s+|your\s+|my\s+)?"
            r"(previous|prior|above|earlier|preceding|original|initial|system|safety|existing)?\s*"
            r"(instructions?|prompts?|rules|guidelines|directions|context|polic(y|ies)|programming|restrictions)",
            _I,
        ),
    ),
    "prompt_leak": (
        0.7,
        0.9,
        re.compile(
            r"\b(reveal|print|show|repeat|output|display|leak|tell me)\b[^.\n]{0,30}?\b(your|the)\s+"
            r"(system\s+prompt|initial\s+prompt|hidden\s+(instructions|prompt)|instructions\s+above|original\s+instructions)",
            _I,
        ),
    ),
    "new_persona": (
        0.45,
        0.8,
        re.compile(
            r"\b(you\s+are\s+now|from\s+now\s+on\s+you|act\s+as\s+(an?\s+)?(unrestricted|unfiltered|jailbroken)|"
            r"(developer|god|jailbreak|dan)\s+mode|do\s+anything\s+now|no\s+longer\s+bound\s+by|"
            r"without\s+any\s+(restrictions|filters|limitations))",
            _I,
        ),
    ),
    "role_marker": (
        0.6,
        0.9,
        re.compile(
            r"(^|\n)\s*(###\s*)?(system|assistant|developer)\s*(message|prompt)?\s*:|<\|(im_start|system|start_header_id)\|>|"
            r"\[/?INST\]|<</?SYS>>|\bBEGIN\s+SYSTEM\s+PROMPT\b",
            _I,
        ),
    ),
    "note_to_ai": (
        0.5,
        0.9,
        re.compile(
            r"\b(note|message|instructions?|attention)\s+(to|for)\s+(the\s+|an?\s+)?(ai|assistant|llm|chatbot)\b|"
            r"\b(note|message|instructions?|attention)\s+(to|for)\s+(the|any)\s+(language\s+)?model\b|"
            r"\[(ai|assistant)\s+instructions?\s*:|\b(ai|assistant)\s*(reading\s+this)?\s*[:,]\s*(please\s+)?"
            r"(ignore|do\s+not|instead|you\s+must)",
            _I,
        ),
    ),
    "instead": (
        0.25,
        0.7,
        re.compile(
            r"\b(instead|rather)\b[^.\n]{0,30}\b(answer|respond|reply|write|do|say|output)\b|"
            r"\bdo\s+not\s+(summari[sz]e|translate|follow|tell\s+the\s+user)\b",
            _I,
        ),
    ),
    "exfiltration": (
        0.3,
        0.9,
        re.compile(
            r"\b(send|forward|post|upload|email|exfiltrate|leak)\b[^.\n]{0,60}?\b(conversation|chat\s+history|"
            r"password|credentials|api\s+keys?|personal\s+data|user'?s?\s+data|contacts)\b[^.\n]{0,40}?\b(to|at)\b|"
            r"!\[[^\]]*\]\(https?://[^)]*\{",
            _I,
        ),
    ),
}


class InjectionOptions(Options):
    model: str | None = None
    """Also use a prompt-injection sequence classifier (a local folder or hub id); none by default."""
    label: str | None = None
    """The classifier's label for injection (default: the one whose name says injection or unsafe)."""
    tool_only: bool = False
    """Check only tool results and documents (indirect injection), not the user's own messages."""
    cue_weights: dict[str, float] = Field(default_factory=dict)
    """Override the weight of a cue family (override, prompt_leak, new_persona, role_marker, note_to_ai,
    instead, exfiltration) in every role; 0 turns it off."""


@register
class Injection(Detector):
    name: ClassVar[str] = "injection"
    summary: ClassVar[str] = "prompt injection: direct overrides and instructions hidden in tool results/documents"
    sides: ClassVar[tuple[Any, ...]] = ("input",)
    finds_spans: ClassVar[bool] = False
    Options = InjectionOptions
    default_threshold: ClassVar[float] = 0.6
    """One strong cue (an override, a prompt-leak request) or two weaker ones; any cue in a tool result."""

    def __init__(self, options: InjectionOptions | None = None, *, threshold: float | None = None) -> None:
        super().__init__(options, threshold=threshold)
        self._classifier: Any = None
        self.inline = not getattr(self.options, "model", None)  # a classifier model goes to the rail pool

    def warm_up(self) -> None:
        opts: InjectionOptions = self.options  # type: ignore[assignment]
        if opts.model and self._classifier is None:
            from tether.judges.text_classifier import TextClassifier

            self._classifier = TextClassifier(opts.model, label=opts.label, keywords=("injection", "unsafe"))

    def score(self, sample: Sample) -> tuple[float, str, str, tuple[Span, ...]]:
        opts: InjectionOptions = self.options  # type: ignore[assignment]
        indirect = sample.role == "tool"
        if opts.tool_only and not indirect:
            return 0.0, "not a tool result", "text", ()
        best = (0.0, "no injection cues", "text")
        for view in sample.views:
            keep = 1.0
            found = []
            for family, (user_weight, tool_weight, pattern) in CUES.items():
                weight = opts.cue_weights.get(family, tool_weight if indirect else user_weight)
                if weight > 0 and pattern.search(view.text):
                    keep *= 1.0 - weight
                    found.append(family)
            score = 1.0 - keep
            if score > best[0]:
                where = "tool result" if indirect else "user message"
                best = (score, f"injection cues in a {where}: {', '.join(found)}", view.how)
        if self._classifier is not None or opts.model:
            self.warm_up()
            p = float(self._classifier.score([sample.text])[0])
            if p > best[0]:
                best = (p, f"injection classifier p={p:.2f}", "text")
        return best[0], best[1], best[2], ()
