"""The converter registry: the ``Converter`` base class, ``register_converter`` for functions and classes,
lookup with option checking, and chains of converters."""

from __future__ import annotations

import difflib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tether.errors import ConfigError, TetherError


class Converter(ABC):
    """Base of every converter: ``convert`` one prompt; ``decode`` undoes it where ``reversible``."""

    name: str = ""
    description: str = ""
    reversible: bool = False
    requires: tuple[str, ...] = ()
    """Options the converter cannot work without (e.g. ``translator``), checked before a campaign starts."""

    @abstractmethod
    def convert(self, text: str) -> str:
        """The converted prompt."""

    def convert_batch(self, texts: Sequence[str]) -> list[str]:
        """Convert many prompts; the default converts one at a time."""
        return [self.convert(text) for text in texts]

    def decode(self, text: str) -> str:
        """The original prompt back from a converted one (reversible converters only)."""
        raise TetherError(f"the {self.name} converter is not reversible, so it has no decode")

    def __call__(self, text: str) -> str:
        return self.convert(text)

    def __repr__(self) -> str:
        return f"<converter {self.name}>"


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Converter]
    options: inspect.Signature
    description: str
    requires: tuple[str, ...] = ()


_CONVERTERS: dict[str, _Entry] = {}
_T = TypeVar("_T")


class _FunctionConverter(Converter):
    """A converter made from a plain function ``fn(text, **options) -> str``."""

    def __init__(self, name: str, description: str, fn: Callable[..., str], options: dict[str, Any]) -> None:
        self.name, self.description, self.fn, self.options = name, description, fn, options

    def convert(self, text: str) -> str:
        return self.fn(text, **self.options)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0].strip()


def register_converter(name: str, *, replace: bool = False) -> Callable[[_T], _T]:
    """Register a :class:`Converter` subclass or a function ``fn(text, **options) -> str`` under ``name``.

    The description is the class's ``description`` or, failing that, the first line of its docstring.
    Registering a taken name raises ConfigError unless ``replace=True``.
    """

    def decorate(obj: _T) -> _T:
        if name in _CONVERTERS and not replace:
            raise ConfigError(f"a converter named {name!r} is already registered; pass replace=True to override it")
        if inspect.isclass(obj):
            if not issubclass(obj, Converter):
                raise ConfigError(f"converter {name!r}: a class must subclass tether.redteam.Converter")
            obj.name = name
            obj.description = obj.__dict__.get("description") or _first_line(obj.__doc__)
            _CONVERTERS[name] = _Entry(obj, inspect.signature(obj), obj.description, tuple(obj.requires))
        elif callable(obj):
            fn: Callable[..., str] = obj
            description = _first_line(fn.__doc__)
            signature = inspect.signature(fn)
            options = signature.replace(parameters=list(signature.parameters.values())[1:])

            def factory(**kwargs: Any) -> Converter:
                return _FunctionConverter(name, description, fn, kwargs)

            _CONVERTERS[name] = _Entry(factory, options, description)
        else:
            raise ConfigError(f"converter {name!r}: expected a Converter class or a function, got {obj!r}")
        return obj

    return decorate


def _entry(name: str) -> _Entry:
    try:
        return _CONVERTERS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _CONVERTERS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown converter {name!r}{hint}; choose one of {', '.join(list_converters())}", field="converter"
        ) from None


def get_converter(name: str, **options: Any) -> Converter:
    """A new converter called ``name`` with ``options``; ConfigError naming the valid options otherwise."""
    entry = _entry(name)
    try:
        entry.options.bind(**options)
    except TypeError as exc:
        valid = ", ".join(entry.options.parameters) or "none"
        raise ConfigError(f"converter {name!r}: {exc}; its options are: {valid}", field="converter") from None
    return entry.factory(**options)


def list_converters() -> list[str]:
    """The registered converter names, sorted."""
    return sorted(_CONVERTERS)


def converter_description(name: str) -> str:
    """One line on what converter ``name`` does."""
    return _entry(name).description


def required_resources(name: str) -> tuple[str, ...]:
    """The options converter ``name`` cannot work without (see :attr:`Converter.requires`)."""
    return _entry(name).requires


def converter_options(name: str) -> dict[str, Any]:
    """Option name -> default for converter ``name`` (``inspect.Parameter.empty`` where none)."""
    return {p.name: p.default for p in _entry(name).options.parameters.values()}


class ConverterChain(Converter):
    """Several converters applied in order (e.g. ``past_tense`` then ``base64``); decodes in reverse order."""

    def __init__(self, converters: Sequence[Converter | str]) -> None:
        if not converters:
            raise ConfigError("a converter chain needs at least one converter", field="converters")
        self.converters = [get_converter(c) if isinstance(c, str) else c for c in converters]
        self.name = "+".join(c.name for c in self.converters)
        self.description = "; then ".join(c.description for c in self.converters)
        self.reversible = all(c.reversible for c in self.converters)

    def convert(self, text: str) -> str:
        return self.convert_batch([text])[0]

    def convert_batch(self, texts: Sequence[str]) -> list[str]:
        out = list(texts)
        for converter in self.converters:
            out = converter.convert_batch(out)
        return out

    def decode(self, text: str) -> str:
        if not self.reversible:
            irreversible = [c.name for c in self.converters if not c.reversible]
            raise TetherError(f"the chain {self.name} cannot be decoded: {', '.join(irreversible)} is not reversible")
        for converter in reversed(self.converters):
            text = converter.decode(text)
        return text


def chain(converters: Sequence[Converter | str]) -> ConverterChain:
    """Apply ``converters`` (objects, or names with default options) in order."""
    return ConverterChain(converters)
