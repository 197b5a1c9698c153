"""Config files: YAML with the line of every key, validation into a config class, and dumping."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from tether.config.options import Options
from tether.errors import ConfigError


def _key_lines(text: str) -> dict[str, int]:
    """Line number (1-based) of each key in a YAML mapping: top-level keys by name, nested keys and list
    items by their dotted path (``input_rails.0.options.words``), so an error deep in a file names its line."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    here = f"{path}.{key.value}" if path else str(key.value)
                    lines[here] = key.start_mark.line + 1
                    walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                here = f"{path}.{index}"
                lines[here] = item.start_mark.line + 1
                walk(item, here)

    walk(node, "")
    return lines


def _line_of(loc: tuple[Any, ...], lines: dict[str, int]) -> int | None:
    """The line of the deepest part of a validation error's location that the file has."""
    parts = [str(p) for p in loc]
    for end in range(len(parts), 0, -1):
        line = lines.get(".".join(parts[:end]))
        if line is not None:
            return line
    return None


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse a YAML config into a mapping plus the line of each key; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config: {err.strerror or err}", file=path) from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(
            f"invalid YAML: {getattr(err, 'problem', err)}",
            file=path,
            line=mark.line + 1 if mark else None,
        ) from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("a config file must be a mapping of option: value", file=path, line=1)
    return data, _key_lines(text)


def located(message: str, *loc: str | int) -> PydanticCustomError:
    """An error a model-level check raises about one place in the config (``located("duplicate id",
    "principles", 3, "id")``): :func:`build_config` then names that field and its line, which a plain
    ``ValueError`` from a model validator cannot."""
    return PydanticCustomError("located", "{reason}", {"reason": message, "at": loc})


def _without_tags(loc: tuple[Any, ...], values: Any) -> tuple[Any, ...]:
    """``loc`` without the tags pydantic adds for a union chosen by ``type`` (``sources.0.redteam.attacks`` is
    ``sources.0.attacks`` in the file)."""
    kept: list[Any] = []
    node = values
    for part in loc:
        if isinstance(node, Mapping) and part not in node and part == node.get("type"):
            continue
        kept.append(part)
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(kept)


def build_config(
    cls: type[Options],
    values: dict[str, Any],
    *,
    file: str | Path | None = None,
    lines: dict[str, int] | None = None,
) -> Any:
    """Validate ``values`` into ``cls``; the first problem becomes a ConfigError naming file/line/field."""
    try:
        return cls(**values)
    except ValidationError as err:
        first = err.errors()[0]
        at = tuple((first.get("ctx") or {}).get("at") or ())  # a located() error: where in the model that raised
        loc = _without_tags((*first["loc"], *at) if at else tuple(first["loc"]), values)
        field = ".".join(str(p) for p in loc) or None
        top = str(loc[0]) if loc else None
        flag = f" (flag --{top.replace('_', '-')})" if top and file is None else ""
        raise ConfigError(
            first["msg"].removeprefix("Value error, ") + flag,
            file=file,
            line=_line_of(loc, lines or {}) if top else None,
            field=field,
        ) from err


RENAMED_COMMANDS = {
    "rm-train": "rm train",
    "rm-eval": "rm eval",
    "rm-score": "rm score",
    "judge-refusal": "judge refusal",
}
"""Earlier spellings of a config's ``command:`` key, still read (with a warning) so old files keep working."""


def _command_name(value: Any, *, file: str | Path, line: int | None) -> str:
    """The command a file's ``command:`` key names, with earlier spellings mapped to today's."""
    if not isinstance(value, str):
        raise ConfigError("expected the command's name as text", file=file, line=line, field="command")
    if value in RENAMED_COMMANDS:
        new = RENAMED_COMMANDS[value]
        warnings.warn(f"{file}: `command: {value}` is now spelled `command: {new}`", FutureWarning, stacklevel=3)
        return new
    return value


def load_config(cls: type[Options], path: str | Path | None, overrides: dict[str, Any]) -> Any:
    """A config from an optional YAML file, with explicitly given CLI flags taking precedence."""
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path is not None:
        values, lines = read_yaml(path)
        command = _command_name(values.pop("command", cls.command), file=path, line=lines.get("command"))
        if command != cls.command and command not in cls.reads_commands:
            raise ConfigError(
                f"this config is for `tether {command}`, not `tether {cls.command}`",
                file=path,
                line=lines.get("command"),
                field="command",
            )
    values.update({k: v for k, v in overrides.items() if v is not None})
    if overrides and path is not None:
        # Errors in flag values should not point at a line of the file.
        lines = {k: v for k, v in lines.items() if overrides.get(k.split(".", 1)[0]) is None}
    return build_config(cls, values, file=path, lines=lines)


def validate_file(path: str | Path, commands: Mapping[str, type[Options]]) -> Options:
    """Check a config file against the schema its ``command:`` key picks from ``commands`` (the CLI's
    table), without loading any model or data."""
    values, lines = read_yaml(path)
    names = ", ".join(sorted(commands))
    if "command" not in values:
        raise ConfigError(f"missing 'command' (one of: {names})", file=path, line=1, field="command")
    command = _command_name(values.pop("command"), file=path, line=lines.get("command"))
    if command not in commands:
        raise ConfigError(
            f"unknown command {command!r} (one of: {names})", file=path, line=lines.get("command"), field="command"
        )
    return build_config(commands[command], values, file=path, lines=lines)


def dump_config(config: Options) -> str:
    """The resolved config as YAML, loadable again with ``--config``."""
    data = {"command": type(config).command, **config.model_dump(mode="json")}
    return yaml.safe_dump(data, sort_keys=False)
