"""Every built-in detector, registered in :data:`DETECTORS` (``tether guard detectors`` lists them).

An outside package adds one with ``@register`` on a :class:`Detector` subclass.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from tether.errors import ConfigError
from tether.guard.detectors import (  # noqa: F401  (each module registers its detectors)
    activation_probe,
    blocklist,
    embedded,
    injection,
    json_schema,
    obfuscation,
    output_judge,
    pii,
    secrets,
    toxicity,
)
from tether.guard.detectors.base import DETECTORS, Detector, EmbeddingCache, Sample, register

__all__ = ["DETECTORS", "Detector", "EmbeddingCache", "Sample", "build_detector", "check_options", "register"]


def check_options(name: str, options: dict[str, Any]) -> Any:
    """The detector's Options model built from a rail's ``options:``; ValueError with the field on a problem."""
    cls = DETECTORS.get(name)
    try:
        return cls.Options.model_validate(options)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"{name} option {where}: {message}" if where else f"{name}: {message}") from None


def build_detector(name: str, options: dict[str, Any] | None = None, threshold: float | None = None) -> Detector:
    try:
        parsed = check_options(name, options or {})
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return DETECTORS.get(name)(parsed, threshold=threshold)
