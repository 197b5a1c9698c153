"""The serving encoder: concurrent requests merged into one pass, and batches of similar length."""

from __future__ import annotations

import threading

import pytest
import torch

from tether.guard.encoder import BatchingEncoder
from tether.judges.embedding import length_batches

pytestmark = pytest.mark.unit


def test_length_batches_sort_by_length_and_respect_both_limits():
    lengths = [5, 100, 3, 4, 60, 2]
    # sorted: 2 (i5), 3 (i2), 4 (i3), 5 (i0), 60 (i4), 100 (i1); at most 3 items and 120 padded tokens a batch
    assert length_batches(lengths, batch_size=3, token_budget=120) == [[5, 2, 3], [0, 4], [1]]
    assert length_batches([500], batch_size=8, token_budget=10) == [[0]]  # one long text still gets a batch
    assert length_batches([], batch_size=8, token_budget=10) == []


def test_concurrent_calls_share_one_pass_and_each_gets_its_own_rows():
    calls: list[list[str]] = []
    first_started, release = threading.Event(), threading.Event()

    def encode(texts):
        calls.append(list(texts))
        if len(calls) == 1:
            first_started.set()
            release.wait(10)
        return torch.tensor([[float(len(t))] for t in texts])

    encoder = BatchingEncoder(encode)
    results: dict[str, torch.Tensor] = {}

    def call(name: str, texts: list[str]) -> None:
        results[name] = encoder(texts)

    lead = threading.Thread(target=call, args=("lead", ["a"]))
    lead.start()
    assert first_started.wait(10)
    others = [threading.Thread(target=call, args=(f"t{i}", ["x" * (i + 2), "y" * (i + 10)])) for i in range(4)]
    for t in others:
        t.start()
    for _ in range(1000):  # until the four wait in the queue behind the running pass
        if encoder._queue.qsize() == 4:
            break
        threading.Event().wait(0.01)
    release.set()
    for t in [lead, *others]:
        t.join(10)
    assert calls[0] == ["a"] and len(calls) == 2 and len(calls[1]) == 8  # the four callers went in one pass
    assert results["lead"].tolist() == [[1.0]]
    for i in range(4):
        assert results[f"t{i}"].tolist() == [[float(i + 2)], [float(i + 10)]]


def test_an_encoding_error_reaches_every_caller_of_that_pass_and_the_next_pass_works():
    state = {"fail": True}

    def encode(texts):
        if state["fail"]:
            state["fail"] = False
            raise RuntimeError("out of memory")
        return torch.ones(len(texts), 2)

    encoder = BatchingEncoder(encode)
    with pytest.raises(RuntimeError, match="out of memory"):
        encoder(["a", "b"])
    assert encoder(["c"]).shape == (1, 2)
