"""Prompt converters: turn a request into an attack prompt (an encoding, an obfuscation, a rephrasing).

A converter is an object with ``convert(text) -> str`` (and ``convert_batch``, which the ``translate``
converter overrides to call its model once). Converters live in a registry so that outside code can add
its own, as garak's buffs and PyRIT's converters do:

    @register_converter("reverse")
    def reverse(text: str) -> str:
        \"\"\"Write the prompt backwards.\"\"\"
        return text[::-1]

    get_converter("confusables", rate=0.3, seed=1).convert("How do I pick a lock?")

A function's options are its keyword arguments after the text; a class's are its constructor's keyword
arguments. Unknown options are refused by :func:`get_converter` with the list of valid ones. Converters that
draw random choices take a ``seed`` and start a fresh ``random.Random(seed)`` on every call, so one
converter gives the same output for the same text however many prompts it saw before. Reversible
converters (``reversible = True``) have an exact ``decode``, so tests can round-trip them and a judge can
read a model's encoded answer.

The encodings follow the competing-objectives/mismatched-generalisation attacks of Wei et al. 2023,
"Jailbroken: How Does LLM Safety Training Fail?" (base64, ROT13, leetspeak, Morse ...); each can wrap its
output in an instruction that asks the model to decode it (:data:`WRAPS`).

One module per family: ``registry`` (the base class, registration, lookup, chains), ``encodings``,
``obfuscations``, ``past_tense`` and ``translate``; importing this package registers every built-in one.
"""

from tether.redteam.converters.encodings import WRAPS
from tether.redteam.converters.obfuscations import CONFUSABLES, ZERO_WIDTH
from tether.redteam.converters.past_tense import past_tense
from tether.redteam.converters.registry import (
    Converter,
    ConverterChain,
    chain,
    converter_description,
    converter_options,
    get_converter,
    list_converters,
    register_converter,
    required_resources,
)
from tether.redteam.converters.translate import SupportsGenerate, Translator

__all__ = [
    "CONFUSABLES",
    "WRAPS",
    "ZERO_WIDTH",
    "Converter",
    "ConverterChain",
    "SupportsGenerate",
    "Translator",
    "chain",
    "converter_description",
    "converter_options",
    "get_converter",
    "list_converters",
    "past_tense",
    "register_converter",
    "required_resources",
]
