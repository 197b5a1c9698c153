"""Tiny random models for tests: a small config, random weights and a real tokenizer."""

from __future__ import annotations

from pathlib import Path


def build_tiny_model(
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 64,
    initializer_range: float = 0.02,
    seed: int = 0,
    tie_word_embeddings: bool = True,
) -> Path:
    """Write a randomly initialised Llama-architecture model plus the tokenizer to ``out_dir``. Tied
    embeddings make greedy decoding repeat the prompt's last (special) token, which decodes to nothing;
    ``tie_word_embeddings=False`` gives a model that writes (random) text."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=2048,
        initializer_range=initializer_range,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
