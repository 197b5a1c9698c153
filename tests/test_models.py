"""Model spec resolution, hub loading code path, tiny models, trust_remote_code default."""

from __future__ import annotations

import pytest

from tether.errors import ModelError
from tether.models import loading


def test_local_folder_and_run_folder_resolve(tmp_path, tiny_model_dir):
    assert loading.resolve(str(tiny_model_dir)) == str(tiny_model_dir)
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    assert loading.resolve(str(run)) == str(run / "model")


def test_bad_local_paths_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        loading.resolve(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="not a Hugging Face model folder"):
        loading.resolve(str(empty))
    file = tmp_path / "weights.bin"
    file.write_text("x")
    with pytest.raises(ModelError, match="is a file"):
        loading.resolve(str(file))


def test_hub_ids_go_to_from_pretrained_without_remote_code(monkeypatch):
    import transformers

    calls = []

    def fake(source, **kwargs):
        calls.append((source, kwargs))
        return "model"

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake)
    assert loading.load_model("HuggingFaceTB/SmolLM2-135M-Instruct", revision="main") == "model"
    source, kwargs = calls[0]
    assert source == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert kwargs["trust_remote_code"] is False and kwargs["revision"] == "main"


def test_offline_hub_failure_is_a_model_error(monkeypatch):
    import transformers

    def offline(source, **kwargs):
        raise OSError("We couldn't connect to the hub")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(ModelError, match="network access"):
        loading.load_tokenizer("someone/some-model")


def test_tiny_model_uses_the_real_tokenizer(tiny_model_dir, tokenizer_dir):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert config.num_hidden_layers == 2 and config.vocab_size == len(tokenizer)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(tokenizer_dir).chat_template


def test_adapter_folder_loads_base_then_adapter(tmp_path, tiny_model_dir):
    from tether.models.lora import apply_lora, is_peft

    model = apply_lora(loading.load_model(str(tiny_model_dir)), r=2, alpha=4)
    model.save_pretrained(tmp_path / "adapter")
    loaded = loading.load_model(str(tmp_path / "adapter"))
    assert is_peft(loaded)
    assert loading.load_tokenizer(str(tmp_path / "adapter")).chat_template
