"""The embedded default model: GGUF conversion, loading, and a few SFT steps (marked slow)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow


def test_conversion_reproduces_the_gguf_model(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tether.models import embedded
    from tether.models.loading import load_model, load_tokenizer

    monkeypatch.setenv("TETHER_HOME", str(tmp_path))
    name = embedded.DEFAULT_MODEL
    folder = embedded.ensure_converted(name, progress=False)
    assert folder == tmp_path / "models" / name
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.parent.glob(f".{name}.*")), "temporary conversion folder left behind"
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert embedded.ensure_converted(name) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp, "converted twice"

    tokenizer = load_tokenizer(name)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    ours = load_model(name).eval()
    gguf = embedded.gguf_path(name)
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False
    )
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    assert (
        ids["input_ids"].tolist() == ref_tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"].tolist()
    )
    with torch.no_grad():
        torch.testing.assert_close(ours(**ids).logits, reference(**ids).logits, rtol=0, atol=0)


def test_lora_sft_steps_on_the_embedded_model(tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "sft",
        "--data",
        str(REPO / "examples" / "refusals.jsonl"),
        "--out",
        str(out),
        "--lora",
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--lr",
        "3e-4",
        "--no-progress",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 3 and all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = json.loads((out / "model" / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"])
    model = PeftModel.from_pretrained(base, out / "model")
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0
