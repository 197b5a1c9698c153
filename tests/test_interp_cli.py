"""`tether interp ...` from the command line: the commands are wired to their configs and run functions, and bad
input exits 2 with the field named before any model loads."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_interp_capture_and_lens_from_the_cli(tiny_model_dir, tmp_path):
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"instruction": "Bake bread"}\n{"text": "The capital of France is"}\n')
    done = run_cli(
        "interp", "capture", "--model", str(tiny_model_dir), "--data", str(texts), "--sites", "resid_post.*",
        "--out", str(tmp_path / "capture"), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "capture" / "summary.json").read_text())
    assert summary["examples"] == 2 and summary["sites"] == ["resid_post.0", "resid_post.1"]
    index = json.loads((tmp_path / "capture" / "activations" / "index.json").read_text())
    assert index["complete"] and index["tokens"] == summary["tokens"] > 2

    done = run_cli(
        "interp", "lens", "--model", str(tiny_model_dir), "--prompt", "The capital of France is",
        "--out", str(tmp_path / "lens"), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "lens" / "report.html").read_text().count("<svg") >= 1


def test_interp_commands_refuse_bad_input_with_exit_2(tiny_model_dir, tmp_path):
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "hello"}\n')
    bad_site = run_cli(
        "interp", "capture", "--model", str(tiny_model_dir), "--data", str(texts), "--sites", "residual.1",
        "--out", str(tmp_path / "capture"),
    )  # fmt: skip
    assert bad_site.returncode == 2 and "KIND.LAYER" in bad_site.stderr + bad_site.stdout
    assert not (tmp_path / "capture").exists()
    same = run_cli(
        "interp", "patch", "--model", str(tiny_model_dir), "--clean", "a b", "--corrupted", "a c",
        "--answer", " x", "--wrong-answer", " x", "--out", str(tmp_path / "patch"),
    )  # fmt: skip
    assert same.returncode == 2 and "wrong-answer" in same.stderr + same.stdout


def test_sae_train_eval_and_cards_from_the_cli(tiny_model_dir, tmp_path):
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": f"Story {n}: a fox ran into the woods."}) + "\n" for n in range(6)))
    done = run_cli(
        "interp", "capture", "--model", str(tiny_model_dir), "--data", str(texts), "--sites", "resid_post.1",
        "--out", str(tmp_path / "capture"), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    store = tmp_path / "capture" / "activations"
    train = ["sae", "train", "--activations", str(store), "--out", str(tmp_path / "sae"), "--d-sae", "64"]
    too_big = run_cli(*train, "--k", "100", "--batch-size", "8", "--tokens", "64", "--no-progress")
    assert too_big.returncode == 2 and "k" in too_big.stderr + too_big.stdout
    assert not (tmp_path / "sae").exists()
    done = run_cli(*train, "--k", "4", "--batch-size", "8", "--tokens", "160", "--no-progress")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "sae" / "summary.json").read_text())
    assert summary["site"] == "resid_post.1" and summary["steps"] == 20 and summary["final"]["l0"] <= 4
    assert (tmp_path / "sae" / "sae" / "sae_weights.safetensors").exists()

    done = run_cli(
        "sae", "eval", "--sae", str(tmp_path / "sae"), "--activations", str(store), "--data", str(texts),
        "--output", str(tmp_path / "eval.json"), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["site"] == "resid_post.1" and metrics["ce_loss_recovered"] is not None
    done = run_cli(
        "sae", "cards", "--sae", str(tmp_path / "sae"), "--activations", str(store),
        "--output", str(tmp_path / "cards.html"), "--count", "2", "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "<mark>" in (tmp_path / "cards.html").read_text()
