"""End-to-end SFT on a tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    name = "adapter_model.safetensors" if (model_dir / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(str(model_dir / name))


@pytest.mark.parametrize("lora", [False, True])
def test_sft_trains_and_saves(tmp_path, tiny_model_dir, chat_file, lora):
    from tether.config import SFTConfig
    from tether.train.sft import run_sft

    out = tmp_path / "run"
    config = SFTConfig(
        model=str(tiny_model_dir),
        data=str(chat_file),
        out=out,
        lora=lora,
        max_steps=4,
        batch_size=4,
        lr=1e-2,
        progress=False,
    )
    model_dir = run_sft(config)
    assert model_dir == out / "model"
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert (out / "config.yaml").is_file()
    if lora:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        assert (model_dir / "adapter_config.json").is_file()
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        before = {n: p.clone() for n, p in base.named_parameters()}
        merged = PeftModel.from_pretrained(base, model_dir).merge_and_unload()
        changed = [n for n, p in merged.named_parameters() if not torch.equal(p, before[n])]
        assert changed, "LoRA adapters loaded with plain peft changed no weight"
        # transformers itself loads a peft adapter folder (with peft installed) onto its base model.
        plain = AutoModelForCausalLM.from_pretrained(model_dir)
        assert any("lora_" in n for n, _ in plain.named_parameters())
    else:
        trained = _weights(model_dir)
        initial = _weights(tiny_model_dir)
        unchanged = [n for n in initial if torch.equal(initial[n], trained[n])]
        assert not unchanged, unchanged
