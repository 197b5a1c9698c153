"""What a data set holds: counts by kind and form, turns, and prompt/completion length statistics.

Lengths are in characters, plus tokens when the caller passes one token count per record. For a
conversation the "prompt" is every non-assistant message and the "completion" every assistant message
(what the model reads and what it learns to write); a preference contributes both its chosen and its
rejected completion.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tether.data.records import Conversation, Message, Preference, Record

if TYPE_CHECKING:
    from rich.table import Table


@dataclass(frozen=True)
class LengthStats:
    """min / mean / median / 95th percentile (linear interpolation) / max of some lengths."""

    count: int
    min: float
    mean: float
    median: float
    p95: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> LengthStats | None:
        """Statistics of ``values``; None when there are none."""
        if not values:
            return None
        ordered = sorted(values)
        return cls(
            count=len(ordered),
            min=ordered[0],
            mean=statistics.fmean(ordered),
            median=statistics.median(ordered),
            p95=_percentile(ordered, 0.95),
            max=ordered[-1],
        )


def _percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolating linearly between ranks (numpy's default)."""
    rank = q * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class DataSummary:
    """Counts and length statistics of a list of records; see :func:`summarize`."""

    records: int
    kinds: dict[str, int]
    conversational: int
    standard: int
    turns: LengthStats | None
    """Messages per conversational record (prompt plus one completion)."""
    prompt_chars: LengthStats | None
    completion_chars: LengthStats | None
    tokens: LengthStats | None
    """Token counts per record, when given to :func:`summarize`."""
    chosen_longer: float | None
    """Fraction of preference pairs whose chosen completion is longer than the rejected one (length bias)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)

    def to_rich_table(self) -> Table:
        """A table of the length statistics, with the counts in its title and caption."""
        from rich.table import Table

        kinds = ", ".join(f"{count} {kind}" for kind, count in self.kinds.items())
        table = Table(title=f"{self.records} records ({kinds or 'none'})")
        for column in ("", "min", "mean", "median", "p95", "max"):
            table.add_column(column, justify="left" if not column else "right")
        rows = [
            ("turns", self.turns),
            ("prompt chars", self.prompt_chars),
            ("completion chars", self.completion_chars),
            ("tokens", self.tokens),
        ]
        for label, stats in rows:
            if stats is not None:
                values = (stats.min, stats.mean, stats.median, stats.p95, stats.max)
                table.add_row(label, *(f"{value:,.0f}" if value >= 100 else f"{value:.3g}" for value in values))
        caption = f"conversational {self.conversational}, standard {self.standard}"
        if self.chosen_longer is not None:
            caption += f"; chosen longer than rejected in {self.chosen_longer:.0%} of pairs"
        table.caption = caption
        return table


def _chars(value: str | list[Message]) -> int:
    return len(value) if isinstance(value, str) else sum(len(message.content) for message in value)


def summarize(records: Sequence[Record], token_lengths: Sequence[int] | None = None) -> DataSummary:
    """Summarize ``records``; ``token_lengths`` (optional) holds one token count per record."""
    if token_lengths is not None and len(token_lengths) != len(records):
        raise ValueError(f"token_lengths has {len(token_lengths)} values for {len(records)} records")
    kinds: Counter[str] = Counter()
    prompts: list[int] = []
    completions: list[int] = []
    turns: list[int] = []
    pairs = longer = conversational = 0
    for record in records:
        kinds[record.kind] += 1
        if isinstance(record, Conversation):
            conversational += 1
            turns.append(len(record.messages))
            prompts.append(sum(len(m.content) for m in record.messages if m.role != "assistant"))
            completions.append(sum(len(m.content) for m in record.messages if m.role == "assistant"))
            continue
        conversational += record.is_conversational
        prompts.append(_chars(record.prompt))
        if isinstance(record, Preference):
            sides = [_chars(record.chosen), _chars(record.rejected)]
            pairs, longer = pairs + 1, longer + (sides[0] > sides[1])
            first = record.chosen
        else:
            sides, first = [_chars(record.completion)], record.completion
        completions.extend(sides)
        if record.is_conversational:
            turns.append(len(record.prompt) + len(first))
    return DataSummary(
        records=len(records),
        kinds=dict(kinds),
        conversational=conversational,
        standard=len(records) - conversational,
        turns=LengthStats.of(turns),
        prompt_chars=LengthStats.of(prompts),
        completion_chars=LengthStats.of(completions),
        tokens=LengthStats.of(list(token_lengths)) if token_lengths is not None else None,
        chosen_longer=longer / pairs if pairs else None,
    )
