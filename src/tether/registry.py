"""A named registry, for the places where outside code extends tether (suite scorers, choice metrics).

Registering a name that is taken is an error unless ``replace=True``; asking for an unknown name is an
error that lists the registered ones. Both are :class:`~tether.errors.ConfigError` (exit code 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from tether.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """``name -> item`` for one kind of thing (``kind`` names it in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T, *, replace: bool = False) -> T:
        if name in self._items and not replace:
            raise ConfigError(f"a {self.kind} named {name!r} is already registered; pass replace=True to override it")
        self._items[name] = item
        return item

    def decorator(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated item and returns it unchanged."""
        return lambda item: self.add(name, item, replace=replace)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names()) or 'none'}")
        return self._items[name]

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests that register a temporary item)."""
        self._items.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
