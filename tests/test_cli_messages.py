"""Every command-line flag that tether's messages and help texts name exists on some command."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import typer.main

from tests.conftest import REPO
from tether.cli import app

FOREIGN = {"--no-deps"}
"""Flags of other tools that messages quote (pip install --no-deps ...)."""

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9](?![\w-])")


def cli_flags() -> set[str]:
    flags: set[str] = set()
    pending = [typer.main.get_command(app)]
    while pending:
        command = pending.pop()
        for param in command.params:
            flags.update(param.opts)
            flags.update(getattr(param, "secondary_opts", ()))
        pending.extend(getattr(command, "commands", {}).values())
    return flags


def named_flags(files: list[Path]) -> dict[str, set[str]]:
    """Flag -> the files whose string literals (f-string parts included) name it."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in FLAG.findall(node.value):
                    found.setdefault(flag, set()).add(path.name)
    return found


def test_every_flag_named_in_a_message_exists():
    known = cli_flags() | FOREIGN
    assert {"--data-format", "--overwrite", "--attacker-model"} <= known
    unknown = {
        flag: files for flag, files in named_flags(sorted((REPO / "src").rglob("*.py"))).items() if flag not in known
    }
    assert not unknown, "messages name flags no command has:\n" + "\n".join(
        f"{flag}: {', '.join(sorted(files))}" for flag, files in sorted(unknown.items())
    )


def test_a_message_naming_a_missing_flag_is_caught(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text('MESSAGE = f"unknown attack {1}: see `tether redteam --list` (--data-format works)"\n')
    assert set(named_flags([module])) - cli_flags() == {"--list"}
