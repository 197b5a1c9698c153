"""Option log-likelihoods with a shared, cached context equal plain full-sequence scoring."""

from __future__ import annotations

import pytest
import torch

from tether.data.samples import ChoiceSample
from tether.evals.loglikelihood import encode_pair, option_loglikelihoods


def _naive(model, tokenizer, context: str, option: str) -> tuple[float, int]:
    ctx, cont = encode_pair(tokenizer, context, " " + option)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logps = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    return sum(float(logps[len(ctx) - 1 + t, tok]) for t, tok in enumerate(cont)), len(cont)


def test_encode_pair_moves_trailing_spaces_to_the_continuation(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ctx, cont = encode_pair(tok, "Question: 2+2?\nAnswer: ", "4")
    assert ctx == tok("Question: 2+2?\nAnswer:", add_special_tokens=False)["input_ids"]
    assert tok.decode(cont) == " 4"


def test_cached_prefix_scores_equal_full_sequence_scores(tiny_model_dir, tokenizer_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    samples = [
        ChoiceSample("a", "The capital of France is", ("Paris", "a large city in Europe", "Rome"), (0,)),
        ChoiceSample("b", "Q: Who wrote Hamlet?\nA:", ("Shakespeare", "Marlowe"), (0,)),
        ChoiceSample("c", "Short", ("yes", "no", "maybe so, perhaps", "n/a"), (1,)),
    ]
    got = option_loglikelihoods(model, tok, samples, batch_size=2)
    for sample, scores in zip(samples, got, strict=True):
        assert len(scores) == len(sample.choices)
        for option, (score, n) in zip(sample.choices, scores, strict=True):
            expected, m = _naive(model, tok, sample.context, option)
            assert n == m
            assert score == pytest.approx(expected, rel=1e-4, abs=1e-4)
