"""summarize(): counts and hand-computed length statistics."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from rich.table import Table

from tether.data import LengthStats, parse_record, summarize

RECORDS = [
    parse_record(
        "conversation",
        {"messages": [{"role": "user", "content": "hey"}, {"role": "assistant", "content": "hello"}]},
    ),
    parse_record("preference", {"prompt": "abcd", "chosen": "yes!", "rejected": "no"}),
    parse_record(
        "preference",
        {
            "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
            "chosen": [{"role": "assistant", "content": "ok"}],
            "rejected": [{"role": "assistant", "content": "a longer answer"}],
        },
    ),
    parse_record("unpaired", {"prompt": "p", "completion": "done", "label": False}),
]


def test_length_stats_by_hand() -> None:
    stats = LengthStats.of([10, 1, 4, 3])
    assert stats == LengthStats(count=4, min=1, mean=4.5, median=3.5, p95=pytest.approx(9.1), max=10)
    assert LengthStats.of([7]) == LengthStats(count=1, min=7, mean=7, median=7, p95=7, max=7)
    assert LengthStats.of([]) is None


def test_summarize_counts_and_lengths() -> None:
    summary = summarize(RECORDS, token_lengths=[5, 6, 7, 8])
    assert summary.records == 4
    assert summary.kinds == {"conversation": 1, "preference": 2, "unpaired": 1}
    assert (summary.conversational, summary.standard) == (2, 2)
    assert summary.turns == LengthStats.of([2, 3])  # the conversation, and the chat preference's prompt + chosen
    assert summary.prompt_chars == LengthStats.of([3, 4, 2, 1])
    assert summary.completion_chars == LengthStats.of([5, 4, 2, 2, 15, 4])
    assert summary.tokens == LengthStats.of([5, 6, 7, 8])
    assert summary.chosen_longer == 0.5


def test_summary_outputs() -> None:
    summary = summarize(RECORDS)
    data = summary.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["tokens"] is None
    table = summary.to_rich_table()
    assert isinstance(table, Table)
    assert table.row_count == 3
    console = Console(file=io.StringIO(), width=100)
    console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "4 records (1 conversation, 2 preference, 1 unpaired)" in text
    assert "completion chars" in text
    assert table.caption == "conversational 2, standard 2; chosen longer than rejected in 50% of pairs"


def test_summarize_edge_cases() -> None:
    empty = summarize([])
    assert (empty.records, empty.prompt_chars, empty.chosen_longer) == (0, None, None)
    assert empty.to_rich_table().row_count == 0
    with pytest.raises(ValueError, match="token_lengths has 1 values for 4 records"):
        summarize(RECORDS, token_lengths=[1])
