"""Constitutions: YAML files (``command: constitution``) of principles for critique, revision and AI labels.

Each principle has the three texts of Bai et al. 2022 ("Constitutional AI: Harmlessness from AI Feedback",
section 3 and appendix C): a *critique request* ("Identify specific ways in which the assistant's last
response ..."), a *revision request* ("Please rewrite the assistant response to ...") and a *preference
question* for AI preference labels ("Which of these assistant responses is ...?"). The file also holds the
two prompt templates that put them after the conversation, in the paper's form (:data:`CRITIQUE_TEMPLATE`,
:data:`REVISION_TEMPLATE`). ``tether validate FILE`` checks a constitution like any config, with file:line
errors; the team's default is ``data/default.yaml`` (:func:`default_constitution_path`).
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from tether.config import Options, build_config, located, read_yaml
from tether.errors import ConfigError

CRITIQUE_TEMPLATE = "{conversation}\n\nCritiqueRequest: {critique_request}\n\nCritique:"
"""The critic's prompt: the conversation (``Human: ...`` / ``Assistant: ...``), then the principle's critique
request, then ``Critique:`` for the critic to continue (Bai et al. 2022, section 3.1)."""

REVISION_TEMPLATE = (
    "{conversation}\n\nCritiqueRequest: {critique_request}\n\nCritique: {critique}\n\n"
    "RevisionRequest: {revision_request}\n\nRevision:"
)
"""The reviser's prompt: the critique prompt with the critique filled in, then the principle's revision
request and ``Revision:`` (Bai et al. 2022, section 3.1)."""

PLACEHOLDERS = {
    "critique_template": ("conversation", "critique_request"),
    "revision_template": ("conversation", "critique_request", "critique", "revision_request"),
}
"""The placeholders each template must use, and the only ones it may use."""

ROLE_LABELS = {"user": "Human", "assistant": "Assistant", "system": "System", "tool": "Tool"}
"""How a conversation is written into a template: ``Human: ...`` and ``Assistant: ...`` turns, as in the paper."""


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is empty")
    return value


Text = Annotated[str, AfterValidator(_not_blank)]


class Principle(Options):
    """One principle: what the critic looks for, how the reviser fixes it, and how a labeller compares."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    """A short name (lower case, digits, - and _), recorded with every critique, revision and label."""
    critique_request: Text
    """Asks the critic what is wrong with the assistant's last response under this principle."""
    revision_request: Text
    """Asks for the response rewritten to fix what the critique found."""
    preference_question: Text
    """Asks which of two responses better meets the principle (for AI preference labels)."""
    tags: list[str] = Field(default_factory=list)
    """Free labels (harmlessness, honesty, over-refusal ...) for selecting and reporting."""


class Constitution(Options):
    """A constitution: principles for critique, revision and AI preference labels (`tether cai revise`)."""

    command: ClassVar[str] = "constitution"
    file_only: ClassVar[frozenset[str]] = frozenset({"principles"})

    name: Text
    """The constitution's name, recorded in every output."""
    description: str | None = None
    """What it is for and who wrote it."""
    critique_template: Text = CRITIQUE_TEMPLATE
    """The critic's prompt; uses {conversation} and {critique_request} (write {{ and }} for literal braces)."""
    revision_template: Text = REVISION_TEMPLATE
    """The reviser's prompt; uses {conversation}, {critique_request}, {critique} and {revision_request}."""
    principles: list[Principle]
    """The principles; `tether cai revise` picks one per round."""

    @field_validator("critique_template", "revision_template")
    @classmethod
    def _placeholders(cls, value: str, info: ValidationInfo) -> str:
        allowed = PLACEHOLDERS[str(info.field_name)]
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as err:
            raise ValueError(f"not a valid template ({err}); write {{{{ and }}}} for literal braces") from None
        unknown = sorted(used - set(allowed))
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; allowed: {', '.join(allowed)}")
        missing = [name for name in allowed if name not in used]
        if missing:
            raise ValueError(f"missing placeholder {{{missing[0]}}}")
        return value

    @field_validator("principles")
    @classmethod
    def _some(cls, principles: list[Principle]) -> list[Principle]:
        if not principles:
            raise ValueError("a constitution needs at least one principle")
        return principles

    @model_validator(mode="after")
    def _unique_ids(self) -> Constitution:
        first: dict[str, int] = {}
        for index, principle in enumerate(self.principles):
            if principle.id in first:
                raise located(
                    f"duplicate principle id {principle.id!r} (first used by principle {first[principle.id] + 1})",
                    "principles",
                    index,
                    "id",
                )
            first[principle.id] = index
        return self


@dataclass(frozen=True)
class LoadedConstitution:
    """A constitution and the file it came from (its sha256 goes into every output's provenance)."""

    constitution: Constitution
    path: Path
    sha256: str


def default_constitution_path() -> Path:
    """The team's default constitution, shipped with the package."""
    return Path(__file__).parent / "data" / "default.yaml"


def load_constitution(path: str | Path | None = None) -> LoadedConstitution:
    """Read and check a constitution (default: the shipped one); a ConfigError names the file, line and field.
    A ``command:`` key, where present, must say ``constitution``."""
    path = Path(path) if path is not None else default_constitution_path()
    values, lines = read_yaml(path)
    command = values.pop("command", Constitution.command)
    if command != Constitution.command:
        raise ConfigError(
            f"this file is for `tether {command}`, not a constitution (command: constitution)",
            file=path,
            line=lines.get("command"),
            field="command",
        )
    constitution = build_config(Constitution, values, file=path, lines=lines)
    return LoadedConstitution(constitution, path, hashlib.sha256(path.read_bytes()).hexdigest())
