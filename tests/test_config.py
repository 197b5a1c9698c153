"""Typed configs: YAML + flags, `tether validate`, errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tether.cli import config_classes
from tether.config import SFTConfig, dump_config, load_config, validate_file
from tether.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_flags_override_yaml_and_resolved_config_round_trips(tmp_path):
    path = _write(tmp_path, "command: sft\ndata: a.jsonl\nout: o\nlr: 0.5\nlora: true\n")
    config = load_config(SFTConfig, path, {"lr": 0.25, "max_steps": None})
    assert config.lr == 0.25 and config.lora is True and config.max_steps is None
    again = load_config(SFTConfig, _write(tmp_path, dump_config(config)), {})
    assert again == config


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("command: sft\ndata: a.jsonl\nout: o\nlr: fast\n", 4, "lr", "valid number"),
        ("command: sft\ndata: a.jsonl\nout: o\nlearning_rate: 1\n", 4, "learning_rate", "Extra inputs"),
        ("command: sft\nout: o\n", None, "data", "Field required"),
        (
            "command: sft\ndata: a.jsonl\nout: o\nbatch_size: 0\n",
            4,
            "batch_size",
            "greater than or equal to 1",
        ),
        ("command: nope\n", 1, "command", "unknown command"),
        ("data: [1, 2\n", 2, None, "invalid YAML"),
    ],
)
def test_validate_names_file_line_and_field(tmp_path, text, line, field, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        validate_file(path, config_classes())
    assert err.value.file == str(path)
    assert err.value.line == line
    assert err.value.field == field
    assert message in str(err.value)


def test_every_shipped_config_validates():
    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert configs, "no shipped configs found"
    for path in configs:
        validate_file(path, config_classes())


def test_validate_cli(tmp_path):
    good = run_cli("validate", str(REPO / "configs" / "sft-demo-lora.yaml"))
    assert good.returncode == 0, good.stderr
    bad = run_cli("validate", str(_write(tmp_path, "command: sft\ndata: a\nout: o\nlora_r: -1\n")))
    assert bad.returncode == 2
    assert f"{tmp_path / 'c.yaml'}:4: field 'lora_r'" in bad.stderr


def test_flag_errors_name_the_flag(tmp_path):
    result = run_cli("sft", "--data", "x.jsonl", "--out", str(tmp_path / "o"), "--lora-r", "0")
    assert result.returncode == 2
    assert "field 'lora_r'" in result.stderr and "--lora-r" in result.stderr
    assert not (tmp_path / "o").exists()
