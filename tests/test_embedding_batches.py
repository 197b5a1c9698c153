"""The sentence embedder's batches: similar lengths together, within a token budget."""

from __future__ import annotations

import pytest

from tether.judges.embedding import length_batches

pytestmark = pytest.mark.unit


def test_length_batches_sort_by_length_and_respect_both_limits():
    lengths = [5, 100, 3, 4, 60, 2]
    # sorted: 2 (i5), 3 (i2), 4 (i3), 5 (i0), 60 (i4), 100 (i1); at most 3 items and 120 padded tokens a batch
    assert length_batches(lengths, batch_size=3, token_budget=120) == [[5, 2, 3], [0, 4], [1]]
    assert length_batches([500], batch_size=8, token_budget=10) == [[0]]  # one long text still gets a batch
    assert length_batches([], batch_size=8, token_budget=10) == []
