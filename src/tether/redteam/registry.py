"""The attack registry: named attacks, plus every registered converter and template as an attack.

``tether redteam --attacks`` takes names from here, and ``tether redteam-attacks`` lists them. An outside
package adds an attack with :func:`register_attack` (a factory from :class:`AttackResources` to an object
with ``name``, ``kind`` and ``run(requests, target, judge, params)``), a converter with
``register_converter`` or a template with ``register_template``; nothing here names them one by one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether.data.records import Message
from tether.errors import ConfigError
from tether.generation import SamplingParams
from tether.redteam.attacks import Attempt, CrescendoAttack, PairAttack, SingleTurnAttack
from tether.redteam.converters import (
    converter_description,
    converter_options,
    get_converter,
    list_converters,
    required_resources,
)
from tether.redteam.templates import Template, get_template, list_templates, load_template_dir


class Attack(Protocol):
    name: str
    kind: str

    def run(self, requests: Sequence[str], target: Any, judge: Any, params: SamplingParams) -> list[Attempt]: ...


@dataclass(frozen=True)
class AttackResources:
    """What attacks may need besides the request: helper models and settings from the command line."""

    attacker: Any = None
    """The target that writes PAIR's prompts."""
    pair_iterations: int = 3
    translator: Any = None
    """A target the ``translate`` converter asks for its translations."""
    translate_to: str = "Zulu"
    template_dir: str | None = None
    """A folder of extra jailbreak templates (garak format)."""

    def converter_resources(self) -> dict[str, Any]:
        """Converter option name -> value, for the options a converter declares."""
        resources: dict[str, Any] = {"language": self.translate_to}
        if self.translator is not None:
            translator = self.translator
            params = SamplingParams(max_new_tokens=512)

            def translate(texts: list[str]) -> list[str]:
                replies = translator.generate([[Message(role="user", content=t)] for t in texts], params)
                return [r.text if r.error is None else "" for r in replies]

            resources["translator"] = translate
        return resources

    def templates(self) -> dict[str, Template]:
        found = {t.name: t for t in list_templates()}
        if self.template_dir is not None:
            found.update({t.name: t for t in load_template_dir(self.template_dir)})
        return found


RESOURCE_FLAGS = {
    "attacker": "--attacker-model or --attacker-endpoint",
    "translator": "--translator-model or --translator-endpoint",
}
"""The command-line flags that supply each resource, for error messages."""


@dataclass(frozen=True)
class AttackEntry:
    name: str
    kind: str
    description: str
    build: Callable[[AttackResources], Attack]
    requires: tuple[str, ...] = ()


_ATTACKS: dict[str, AttackEntry] = {}


def register_attack(
    name: str, *, kind: str, description: str, requires: tuple[str, ...] = (), replace: bool = False
) -> Callable[[Callable[[AttackResources], Attack]], Callable[[AttackResources], Attack]]:
    """Register a factory ``build(resources) -> Attack`` under ``name``; ``requires`` names the
    :class:`AttackResources` fields it cannot run without (checked before any model loads)."""

    def decorate(build: Callable[[AttackResources], Attack]) -> Callable[[AttackResources], Attack]:
        if name in _ATTACKS and not replace:
            raise ConfigError(f"an attack named {name!r} is already registered; pass replace=True to override it")
        _ATTACKS[name] = AttackEntry(name, kind, description, build, requires)
        return build

    return decorate


@register_attack("direct", kind="baseline", description="the request as is")
def _direct(resources: AttackResources) -> Attack:
    return SingleTurnAttack("direct", lambda request: request)


@register_attack("crescendo", kind="multi-turn", description="scripted escalation over three turns")
def _crescendo(resources: AttackResources) -> Attack:
    return CrescendoAttack()


@register_attack(
    "pair",
    kind="automated",
    description="an attacker model refines the prompt within a query budget (PAIR)",
    requires=("attacker",),
)
def _pair(resources: AttackResources) -> Attack:
    return PairAttack(resources.attacker, iterations=resources.pair_iterations)


def _converter_attack(name: str, resources: AttackResources) -> Attack:
    given = resources.converter_resources()
    converter = get_converter(name, **{k: given[k] for k in converter_options(name) if k in given})
    decode = converter.decode if converter.reversible else None
    return SingleTurnAttack(f"converter:{name}", converter.convert, decode)


def _template_attack(name: str, resources: AttackResources) -> Attack:
    return SingleTurnAttack(f"template:{name}", resources.templates()[name].render)


@dataclass(frozen=True)
class AttackFamily:
    """Attacks made from another registry: ``PREFIX:NAME``, or the bare name when it is unambiguous."""

    prefix: str
    names: Callable[[AttackResources], Sequence[str]]
    build: Callable[[str, AttackResources], Attack]
    requires: Callable[[str], tuple[str, ...]]


FAMILIES = (
    AttackFamily("converter", lambda r: list_converters(), _converter_attack, required_resources),
    AttackFamily("template", lambda r: list(r.templates()), _template_attack, lambda name: ()),
)
"""Families tried in order for a bare name."""


def _resolve(spec: str, resources: AttackResources) -> tuple[Callable[[], Attack], tuple[str, ...]]:
    """(a builder, the resources it requires) for an attack spec; ConfigError for an unknown name."""
    if spec in _ATTACKS:
        entry = _ATTACKS[spec]
        return (lambda: entry.build(resources)), entry.requires
    prefix, _, name = spec.rpartition(":")
    for family in FAMILIES:
        if prefix in ("", family.prefix) and name in family.names(resources):
            return (lambda f=family: f.build(name, resources)), family.requires(name)
    if prefix == "template":
        get_template(name)  # raises with a close-match suggestion
    known = list(_ATTACKS) + list_converters() + [t.name for t in list_templates()]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown attack {spec!r}{hint}; `tether redteam-attacks` lists them", field="attacks")


def attack_requirements(spec: str, resources: AttackResources | None = None) -> tuple[str, ...]:
    """The resources attack ``spec`` needs (e.g. ``("translator",)``), to load only what is asked for."""
    return _resolve(spec, resources or AttackResources())[1]


def make_attack(spec: str, resources: AttackResources | None = None, **fields: Any) -> Attack:
    """An attack from its name: a registered attack (``direct``, ``crescendo``, ``pair``), a converter or a
    template (``converter:`` / ``template:`` prefixes disambiguate). ``fields`` are
    :class:`AttackResources` fields, for callers that do not build one."""
    resources = resources or AttackResources(**fields)
    build, requires = _resolve(spec, resources)
    missing = [name for name in requires if getattr(resources, name) is None]
    if missing:
        flags = " and ".join(RESOURCE_FLAGS.get(name, name) for name in missing)
        raise ConfigError(f"the {spec} attack needs {flags}", field="attacks")
    return build()


def list_attacks(resources: AttackResources | None = None) -> list[tuple[str, str, str]]:
    """(name, kind, description) of every attack: the registered ones, then each family's."""
    resources = resources or AttackResources()
    rows = [(e.name, e.kind, e.description) for e in _ATTACKS.values()]
    rows += [(name, "converter", converter_description(name)) for name in list_converters()]
    rows += [(t.name, f"template ({t.family})", t.description) for t in resources.templates().values()]
    return rows
