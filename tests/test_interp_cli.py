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
