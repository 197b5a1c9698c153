"""Batch plans and collation: length-grouped batches, padding, and padding-free packing.

A batch plan is a pure function of (seed, epoch), so a resumed run sees exactly the batches an
uninterrupted run would have seen.

Packing concatenates several short examples into one row and restarts ``position_ids`` at every
example; with ``attention_mask=None`` transformers builds a block-diagonal causal mask from those
positions, so tokens never attend across examples.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tether.data.tokenization import IGNORE_INDEX, TokenizedExample


@dataclass(frozen=True)
class BatchPlan:
    """Which example indices form each micro-batch of an epoch.

    With ``group_by_length`` the shuffled indices are cut into mega-batches of ``50 * batch_size``,
    each sorted by length and split into batches, and the batch order is shuffled again (the scheme of
    Hugging Face's LengthGroupedSampler): similar lengths share a batch, the epoch stays random.
    """

    lengths: tuple[int, ...]
    batch_size: int
    seed: int
    group_by_length: bool = True
    shuffle: bool = True

    def batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        if self.group_by_length:
            mega = 50 * self.batch_size
            grouped: list[int] = []
            for start in range(0, len(order), mega):
                chunk = order[start : start + mega]
                grouped.extend(sorted(chunk, key=lambda i: -self.lengths[i]))
            order = grouped
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.group_by_length and self.shuffle:
            rng.shuffle(batches)
        return batches


def pack_examples(examples: Sequence[TokenizedExample], max_length: int) -> list[list[int]]:
    """Group example indices into bins of at most ``max_length`` tokens (first-fit decreasing)."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        size = len(examples[i])
        for b, free in enumerate(room):
            if size <= free:
                bins[b].append(i)
                room[b] -= size
                break
        else:
            bins.append([i])
            room.append(max_length - size)
    return bins


@dataclass
class PackedExample:
    """Several examples in one row; ``position_ids`` restart at 0 at each example."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def packed(examples: Sequence[TokenizedExample], max_length: int) -> list[PackedExample]:
    rows = []
    for members in pack_examples(examples, max_length):
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in sorted(members):
            ids += examples[i].input_ids
            labels += examples[i].labels
            positions += list(range(len(examples[i])))
        rows.append(PackedExample(ids, labels, positions))
    return rows


def collate(examples: Sequence[TokenizedExample | PackedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a micro-batch. Packed rows also get ``position_ids``, which the model uses instead of
    the attention mask (kept only to count real tokens).

    Padding in packed rows is its own "example" (positions restart at 0) with no labels, so it is
    never attended to by real tokens and never trained on.
    """
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    is_packed = isinstance(examples[0], PackedExample)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    positions = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
        if is_packed:
            assert isinstance(example, PackedExample)
            positions[row, :n] = torch.tensor(example.position_ids)
            positions[row, n:] = torch.arange(width - n)
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    if is_packed:  # the model gets position_ids instead of the mask (see final_hidden_states)
        batch["position_ids"] = positions
    return batch
