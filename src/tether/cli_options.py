"""Generate Typer commands from typed configs: one flag per config field, help from its docstring.

Flags default to "not given" so that only what the user typed overrides a ``--config`` file.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic.fields import FieldInfo

from tether.config import Options


def _unwrap_optional(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else str
    return annotation


def _bool_or_literal(annotation: Any) -> bool:
    """True for ``bool | Literal[...]`` (a switch with an extra keyword such as 'auto')."""
    args = typing.get_args(annotation)
    return (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and bool in args
        and all(a is bool or typing.get_origin(a) is Literal for a in args)
    )


def _choices(name: str, literal: Any) -> type[enum.Enum]:
    """Typer shows choices for Enums, not Literals: an Enum whose values are the Literal's."""
    values = [str(v) for v in typing.get_args(literal)]
    return enum.Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _option(name: str, field: FieldInfo, panel: str) -> tuple[Any, Any]:
    """(annotation, typer.Option) for one config field."""
    annotation = _unwrap_optional(field.annotation)
    flag = "--" + name.replace("_", "-")
    help_text = " ".join((field.description or "").split())
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    if default is not None and default != []:
        help_text += f" (default: {default})"
    elif field.is_required():
        help_text += " (required unless given in --config)"
    kwargs: dict[str, Any] = {"help": help_text, "show_default": False, "rich_help_panel": panel}
    origin = typing.get_origin(annotation)
    if annotation is bool or _bool_or_literal(annotation):
        # bool | Literal["auto"]: the flag pair forces true/false; left out, the config's default ('auto') holds.
        return bool | None, typer.Option(flag + "/--no-" + name.replace("_", "-"), **kwargs)
    if origin is Literal:
        return _choices(name, annotation) | None, typer.Option(flag, **kwargs)
    if origin is list:
        (item,) = typing.get_args(annotation)
        if typing.get_origin(item) is Literal:
            return list[_choices(name, item)] | None, typer.Option(flag, **kwargs)  # type: ignore[misc]
        return list[item] | None, typer.Option(flag, **kwargs)  # type: ignore[valid-type]
    if annotation in (int, float, str, Path):
        return annotation | None, typer.Option(flag, **kwargs)
    raise TypeError(f"no CLI mapping for field {name}: {field.annotation}")


def config_command(
    cls: type[Options], run: Callable[[Options], Any], *, load: Callable[..., Options]
) -> Callable[..., Any]:
    """A function whose signature Typer turns into ``--config`` plus one flag per field of ``cls``."""
    params = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Path | None, typer.Option("--config", help="YAML file with any of the options below.")
            ],
        )
    ]
    for name, field in cls.model_fields.items():
        if name in cls.file_only:
            continue  # lists of structured items (guard rails) are written in the YAML file
        annotation, option = _option(name, field, cls.panel_of(name))
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[annotation, option]
            )
        )

    def command(**kwargs: Any) -> Any:
        path = kwargs.pop("config")
        given = {k: _plain(v) for k, v in kwargs.items() if v is not None and v != []}
        return run(load(cls, path, given))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = cls.__doc__
    return command
