"""Exact resume after SIGKILL, and the same update under 2-process CPU DDP (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, run_cli


def _args(model: Path, data: Path, out: Path, *extra: str, command: str = "sft") -> list[str]:
    return [
        *command.split(),
        "--model",
        str(model),
        "--data",
        str(data),
        "--out",
        str(out),
        "--lr",
        "1e-2",
        "--seed",
        "3",
        "--no-progress",
        *extra,
    ]


def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path, *, exact: bool) -> None:
    wa, wb = _final_weights(a), _final_weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        if exact:
            assert torch.equal(wa[name], wb[name]), name
        else:
            torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=1e-5, msg=name)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, tiny_model_dir, chat_file):
    steps = ["--max-steps", "12", "--batch-size", "4", "--save-every", "3"]
    straight = tmp_path / "straight"
    done = run_cli(*_args(tiny_model_dir, chat_file, straight, *steps))
    assert done.returncode == 0, done.stderr

    killed = tmp_path / "killed"
    env = {**os.environ, "TETHER_DEBUG_STEP_DELAY": "0.4"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", *_args(tiny_model_dir, chat_file, killed, *steps)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    marker = killed / "checkpoints" / "step-00000006" / "state.json"
    deadline = time.time() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "run ended early"
        assert time.time() < deadline, "no checkpoint at step 6"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "model").exists(), "the run finished before it was killed"

    resumed = run_cli(*_args(tiny_model_dir, chat_file, killed, *steps, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_weights(straight, killed, exact=True)
    logged = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 13))


@pytest.mark.skipif(
    shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists(),
    reason="accelerate CLI not installed",
)
@pytest.mark.parametrize("command", ["sft", "dpo --no-ref-cache"])
def test_two_process_ddp_matches_single_process_accumulation(tmp_path, tiny_model_dir, chat_file, pair_file, command):
    """2 processes x 1 micro-batch == 1 process x 2 accumulated micro-batches (token-normalised for SFT,
    pair-normalised for DPO, whose reference log-probs are also computed in 2 shards and gathered).

    On a machine without GPUs, ``accelerate launch --multi_gpu`` starts torchrun and accelerate picks
    MULTI_CPU with the gloo backend (``--cpu`` alone would start a single process).
    """
    data = chat_file if command == "sft" else pair_file  # dpo: both runs compute the reference
    single = tmp_path / "single"
    one = run_cli(
        *_args(
            tiny_model_dir, data, single, "--max-steps", "3", "--batch-size", "2", "--grad-accum", "2", command=command
        )
    )
    assert one.returncode == 0, one.stderr

    ddp = tmp_path / "ddp"
    launcher = Path(sys.executable).parent / "accelerate"
    cmd = [
        str(launcher),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        "-m",
        "tether",
        *_args(tiny_model_dir, data, ddp, "--max-steps", "3", "--batch-size", "2", command=command),
    ]
    two = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-4000:]
    _assert_same_weights(single, ddp, exact=False)
    metrics = [json.loads(line) for line in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 3


@pytest.mark.skipif(
    shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists(),
    reason="accelerate CLI not installed",
)
def test_two_process_rloo_runs_with_gloo(tmp_path, tiny_model_dir):
    """Each process samples its own prompts; rewards, KL and beta are gathered, so both log the same step
    records (rank 0 writes them) and stop alike; DDP keeps the weights in sync."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about {t}."}) + "\n" for t in "abcdefgh"))
    rewards = tmp_path / "rewards.py"
    rewards.write_text("def short(prompts, responses):\n    return [-len(r) / 10 for r in responses]\n")
    out = tmp_path / "ddp-rloo"
    launcher = Path(sys.executable).parent / "accelerate"
    cmd = [
        str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29519",
        "-m", "tether", "rloo", "--model", str(tiny_model_dir), "--prompts", str(prompts),
        "--reward", f"py:{rewards}:short", "--out", str(out), "--steps", "2", "--prompts-per-step", "2",
        "--samples-per-prompt", "2", "--max-new-tokens", "4", "--minibatch-size", "2", "--kl-target", "0.1",
        "--no-progress",
    ]  # fmt: skip
    two = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-4000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["samples_per_s"] > 0 for r in records)
    rows = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2  # rank 0's samples: 2 steps x 2 prompts x 2 samples
    assert (out / "model" / "config.json").is_file()
