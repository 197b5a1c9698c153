"""Batched generation: same greedy output as one prompt at a time, order kept, seeds, stop strings."""

from __future__ import annotations

import pytest

from tether.generation import GenerationEngine, SamplingParams

PROMPTS = ["Hi", "Tell me a long story about a dragon and a knight", "2+2?", "Name three colours of the rainbow"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tokenizer_dir):
    """A tiny model with large random weights, so that greedy decoding wanders over the vocabulary."""
    from tether.models.loading import load_model, load_tokenizer
    from tether.models.tiny import build_tiny_model

    path = build_tiny_model(tokenizer_dir, tmp_path_factory.mktemp("noisy"), initializer_range=1.0, seed=3)
    return GenerationEngine(load_model(str(path)), load_tokenizer(str(path)), batch_size=4)


def test_batched_greedy_equals_one_at_a_time(engine):
    params = SamplingParams(max_new_tokens=8)
    batched = engine.generate(PROMPTS, params)
    alone = [engine.generate([p], params)[0] for p in PROMPTS]
    assert batched == alone
    assert any(batched)


def test_sampling_is_deterministic_per_seed(engine):
    a = engine.generate(PROMPTS, SamplingParams(max_new_tokens=8, temperature=1.0, seed=1))
    b = engine.generate(PROMPTS, SamplingParams(max_new_tokens=8, temperature=1.0, seed=1))
    c = engine.generate(PROMPTS, SamplingParams(max_new_tokens=8, temperature=1.0, seed=2))
    assert a == b and a != c


def test_stop_strings_cut_the_completion(engine):
    full = engine.generate(PROMPTS[:1], SamplingParams(max_new_tokens=12))[0]
    assert len(full) > 3
    stop = full[2:4]
    cut = engine.generate(PROMPTS[:1], SamplingParams(max_new_tokens=12, stop=(stop,)))[0]
    assert cut == full[: full.find(stop)].strip()
