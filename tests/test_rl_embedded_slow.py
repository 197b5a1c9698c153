"""Reward model and the three online RL methods end to end on the embedded model (marked slow)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_rm_train_eval_score_then_ppo_rloo_grpo_on_the_embedded_model(tmp_path, shared_data):
    hh = shared_data / "hh-rlhf" / "harmless-base-test.shared.jsonl"
    if not hh.is_file():
        pytest.skip(f"{hh} not found")
    common = ["--data", str(hh), "--data-format", "hh-rlhf", "--skip-invalid", "--max-length", "256"]
    rm = tmp_path / "rm"
    done = run_cli("rm", "train", *common, "--limit", "16", "--out", str(rm), "--max-steps", "2", "--batch-size", "4",
                   "--lora", "--lr", "1e-4", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = run_cli("rm", "eval", "--model", str(rm), *common, "--skip", "16", "--limit", "16",
                        "--out", str(tmp_path / "rm-eval"))  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads((tmp_path / "rm-eval" / "eval.json").read_text())
    assert result["pairs"] == 16 and 0.0 <= result["accuracy"]["value"] <= 1.0
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "How do I boil an egg?", "response": "Boil it for 8 minutes."}) + "\n")
    scored = run_cli("rm", "score", "--model", str(rm), "--input", str(rows), "--output", str(tmp_path / "s.jsonl"))
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert isinstance(json.loads((tmp_path / "s.jsonl").read_text())["reward"], float)
    for command in ("ppo", "rloo", "grpo"):
        out = tmp_path / command
        trained = run_cli(command, "--prompts", str(hh), "--prompts-format", "hh-rlhf", "--prompts-limit", "8",
                          "--reward", f"rm:{rm}", "--out", str(out), "--steps", "1", "--prompts-per-step", "2",
                          "--max-new-tokens", "8", "--max-prompt-length", "64", "--lora", "--lr", "1e-4",
                          "--no-progress")  # fmt: skip
        assert trained.returncode == 0, trained.stderr[-3000:]
        (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert record["kl"] == pytest.approx(0.0, abs=1e-4) and record["samples_per_s"] > 0
        assert (out / "model" / "adapter_config.json").is_file() and (out / "report.html").is_file()
