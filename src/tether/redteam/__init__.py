"""Red-teaming building blocks: prompt converters and jailbreak templates, each in a registry.

An attack prompt is ``template.render(converter.convert(request))`` (or the converter applied after the
template); neither needs a model, except the ``translate`` converter, which is given one.
"""

from __future__ import annotations

from tether.redteam.converters import (
    Converter,
    ConverterChain,
    SupportsGenerate,
    Translator,
    chain,
    converter_options,
    get_converter,
    list_converters,
    past_tense,
    register_converter,
)
from tether.redteam.templates import (
    BUILTIN_TEMPLATES,
    FAMILIES,
    Family,
    Template,
    get_template,
    list_templates,
    load_jailbreak_prompts,
    load_template_dir,
    register_template,
)

__all__ = [
    "BUILTIN_TEMPLATES",
    "FAMILIES",
    "Converter",
    "ConverterChain",
    "Family",
    "SupportsGenerate",
    "Template",
    "Translator",
    "chain",
    "converter_options",
    "get_converter",
    "get_template",
    "list_converters",
    "list_templates",
    "load_jailbreak_prompts",
    "load_template_dir",
    "past_tense",
    "register_converter",
    "register_template",
]
