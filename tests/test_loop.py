"""The shared loop: NaN guard, checkpoint contents, packing equivalence, output protection."""

from __future__ import annotations

import json

import pytest
import torch

from tether.config import SFTConfig
from tether.errors import TetherError, TrainingDiverged
from tether.train import sft as sft_recipe
from tether.train.checkpoint import checkpoint_dirs
from tether.train.sft import run_sft


def _config(tmp_path, model, data, **kw):
    base = dict(model=str(model), data=str(data), out=tmp_path / "run", lr=1e-2, batch_size=4, progress=False)
    return SFTConfig(**{**base, **kw})


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(
    tmp_path, tiny_model_dir, chat_file, monkeypatch
):
    calls = {"n": 0}
    real = sft_recipe.sft_loss

    def poisoned(model, batch):
        calls["n"] += 1
        loss, metrics = real(model, batch)
        return (loss * float("nan") if calls["n"] == 5 else loss), metrics

    monkeypatch.setattr(sft_recipe, "sft_loss", poisoned)
    config = _config(tmp_path, tiny_model_dir, chat_file, max_steps=8, save_every=2)
    with pytest.raises(TrainingDiverged, match=r"step 5: loss=nan.*Last good checkpoint: .*step-00000004"):
        run_sft(config)
    kept = checkpoint_dirs(config.out / "checkpoints")
    assert [p.name for p in kept] == ["step-00000002", "step-00000004"]
    assert not (config.out / "model").exists()
    logged = [json.loads(line)["step"] for line in (config.out / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]


def test_checkpoints_are_pickle_free_and_rotated(tmp_path, tiny_model_dir, chat_file):
    config = _config(tmp_path, tiny_model_dir, chat_file, max_steps=6, save_every=2, keep_checkpoints=2, lora=True)
    run_sft(config)
    kept = checkpoint_dirs(config.out / "checkpoints")
    assert [p.name for p in kept] == ["step-00000004", "step-00000006"]
    files = sorted(p.name for p in kept[-1].iterdir())
    assert files == [
        "optimizer.json",
        "optimizer.safetensors",
        "rng-0.json",
        "rng-0.safetensors",
        "scheduler.json",
        "state.json",
        "trainable.safetensors",
    ]
    from safetensors.torch import load_file

    trainable = load_file(str(kept[-1] / "trainable.safetensors"))
    assert trainable and all("lora_" in name for name in trainable)
    assert not list((config.out / "checkpoints").glob(".tmp-*"))


def test_existing_run_is_not_clobbered(tmp_path, tiny_model_dir, chat_file):
    config = _config(tmp_path, tiny_model_dir, chat_file, max_steps=1)
    run_sft(config)
    with pytest.raises(TetherError, match="already holds a finished run"):
        run_sft(config)
    run_sft(_config(tmp_path, tiny_model_dir, chat_file, max_steps=1, overwrite=True))


def test_packed_rows_give_the_same_loss_as_separate_rows(tiny_model_dir, tokenizer_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tether.data.batching import collate, packed
    from tether.data.records import Conversation
    from tether.data.tokenization import ChatEncoder

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.train()
    encoder = ChatEncoder(tokenizer)
    examples = [
        encoder.encode(Conversation.from_prompt_completion(p, c))
        for p, c in [("Hi", "Hello there"), ("2+2?", "4"), ("Name a fruit", "A ripe yellow banana")]
    ]
    separate = collate(examples, tokenizer.pad_token_id)
    together = collate(packed(examples, max_length=4096), tokenizer.pad_token_id)
    assert together["input_ids"].shape[0] == 1
    loss_separate, _ = sft_recipe.sft_loss(model, separate)
    loss_packed, _ = sft_recipe.sft_loss(model, together)
    torch.testing.assert_close(loss_packed, loss_separate, rtol=1e-5, atol=1e-5)


def test_batch_plan_is_deterministic_and_groups_lengths():
    from tether.data.batching import BatchPlan

    lengths = tuple(range(1, 401))
    plan = BatchPlan(lengths, batch_size=8, seed=1)
    assert plan.batches(0) == plan.batches(0)
    assert plan.batches(0) != plan.batches(1)
    flat = sorted(i for b in plan.batches(0) for i in b)
    assert flat == list(range(400))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in plan.batches(0))
    shuffled = BatchPlan(lengths, batch_size=8, seed=1, group_by_length=False)
    spread_random = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in shuffled.batches(0))
    assert spread < spread_random / 5


def test_tensorboard_tracker_writes_events(tmp_path, tiny_model_dir, chat_file):
    pytest.importorskip("tensorboard")
    config = _config(tmp_path, tiny_model_dir, chat_file, max_steps=2, report_to=["tensorboard"])
    run_sft(config)
    events = list(config.out.rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file written"
