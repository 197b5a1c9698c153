"""``tether rm train``: a reward model with the Bradley-Terry loss (:mod:`tether.losses.reward`).

Each micro-batch of B pairs is one forward pass over 2B rows (chosen rows, then rejected rows, right-padded);
the reward of a row is the scalar head at its last token (:func:`tether.models.reward.sequence_rewards`).
With ``--lora`` the backbone gets adapters and the new head is trained in full (peft ``SEQ_CLS``). A pair's
``margin`` and soft label ``p_chosen`` (e.g. from `tether cai label`) travel with it to the loss.

Logged per step: the loss, accuracy (share of pairs with r_chosen > r_rejected), mean chosen and rejected
rewards and their margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tether.config import RMTrainConfig
from tether.data.batching import collate
from tether.data.pair_encoding import PairExample, encode_records
from tether.data.tokenization import ChatEncoder
from tether.errors import DataError
from tether.losses.reward import bradley_terry_loss
from tether.models.reward import load_scalar_model, sequence_rewards
from tether.train.loop import TrainLoop
from tether.train.preference import count_pairs
from tether.train.preflight import check_memory
from tether.train.recipe import finish, open_output, prepare_for_training, read_inputs
from tether.train.workloads import data_facts, offline_build


@dataclass
class RewardRow:
    pair: PairExample
    margin: float
    p_chosen: float = 1.0

    def __len__(self) -> int:
        return len(self.pair)


def collate_reward_rows(rows: list[RewardRow], pad_id: int) -> dict[str, torch.Tensor]:
    """Chosen rows first, then rejected rows, in one right-padded batch; plus each pair's margin and soft label."""
    sequences = [row.pair.sequences() for row in rows]
    batch = collate([c for c, _ in sequences] + [r for _, r in sequences], pad_id)
    batch["margin"] = torch.tensor([row.margin for row in rows], dtype=torch.float32)
    batch["p_chosen"] = torch.tensor([row.p_chosen for row in rows], dtype=torch.float32)
    return batch


class RewardObjective:
    """The loop's ``loss_fn``: rewards of chosen and rejected rows, then the summed Bradley-Terry losses."""

    def __init__(self, center_coefficient: float = 0.0) -> None:
        self.center_coefficient = center_coefficient

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        rewards = sequence_rewards(model, batch)
        b = rewards.shape[0] // 2
        chosen, rejected = rewards[:b], rewards[b:]
        losses = bradley_terry_loss(
            chosen,
            rejected,
            margin=batch["margin"],
            center_coefficient=self.center_coefficient,
            p_chosen=batch["p_chosen"],
        )
        with torch.no_grad():
            values = torch.stack(
                [(chosen > rejected).float().mean(), chosen.mean(), rejected.mean(), (chosen - rejected).mean()]
            ).tolist()
        names = ("rewards/accuracy", "rewards/chosen", "rewards/rejected", "rewards/margin")
        return losses.sum(), dict(zip(names, values, strict=True))


def load_trainable_reward_model(config: RMTrainConfig, pad_token_id: int) -> Any:
    model = load_scalar_model(
        config.model,
        pad_token_id=pad_token_id,
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
        revision=config.revision,
        trainable_adapter=True,
    )
    return prepare_for_training(model, config, task_type="SEQ_CLS")


def encode_reward_pairs(config: RMTrainConfig, records: list, lines: list[int], tokenizer: Any) -> list[RewardRow]:
    """Encode and truncate pairs, keeping each one's margin (0 when the record has none) and soft label (1)."""
    encoder = ChatEncoder(tokenizer)
    rows = []
    for record, line in zip(records, lines, strict=True):
        pairs, _ = encode_records(
            encoder,
            [record],
            max_length=config.max_length,
            max_prompt_length=config.max_prompt_length,
            source=config.data,
            lines=[line],
        )
        if pairs:
            soft = record.p_chosen if record.p_chosen is not None else 1.0
            rows.append(RewardRow(pairs[0], record.margin or 0.0, soft))
    return rows


def run_reward_training(config: RMTrainConfig, *, console: Any = None) -> Path:
    """Train and write ``config.out`` (model/, metrics.jsonl, report.html); returns out/model."""
    inputs = read_inputs(config, "preference", console=console)
    rows = encode_reward_pairs(config, inputs.records, inputs.read_report.lines, inputs.tokenizer)
    if not rows:
        raise DataError("no pair has a response token left after truncation; raise --max-length", file=config.data)
    if console is not None and inputs.accelerator.is_main_process:
        dropped = len(inputs.records) - len(rows)
        console.print(f"[bold]rm train[/]: {len(rows)} pairs ({dropped} dropped: no response token within max_length)")
    build = offline_build(config, **data_facts(rows, copies=2), rows_per_example=2, scalar_head=True)
    config = check_memory(config, build, console=console if inputs.accelerator.is_main_process else None)
    model = load_trainable_reward_model(config, inputs.tokenizer.pad_token_id)
    open_output(config, inputs.accelerator)
    loop = TrainLoop(
        inputs.settings,
        model=model,
        examples=rows,
        collate=lambda batch: collate_reward_rows(batch, inputs.tokenizer.pad_token_id),
        loss_fn=RewardObjective(config.center_rewards),
        accelerator=inputs.accelerator,
        count_units=count_pairs,
        tracker_config=config.model_dump(mode="json"),
    )
    loop.run()
    return finish(config, loop, inputs.tokenizer, report_title=f"tether rm train: {config.out}")
