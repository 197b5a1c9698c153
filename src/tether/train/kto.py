"""``tether kto``: KTO on unpaired examples (see :mod:`tether.losses.kto` for the loss).

KTO's reference point ``z0`` estimates KL(pi || pi_ref) from *mismatched* pairs: example i's prompt with
example (i + 1)'s completion (a fixed rotation over the whole dataset, so the reference log-probs of these
sequences can be computed once and cached like the others; TRL rotates within data-preparation batches).
Per micro-batch the mismatched sequences are scored without gradients, ``z0 = max(0, mean(policy -
reference))`` is averaged over every process's sequences, then the real examples are scored with gradients
and the loss summed; the loop divides by the examples of the optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tether.config import KTOConfig
from tether.data.batching import collate
from tether.data.pair_encoding import UnpairedExample, completion_example, encode_records
from tether.data.tokenization import ChatEncoder, TokenizedExample
from tether.errors import DataError
from tether.losses import kto_loss
from tether.train.logprobs import sequence_logprobs
from tether.train.loop import TrainLoop
from tether.train.preference import reference_scores
from tether.train.preflight import check_memory
from tether.train.recipe import finish, load_trainable_model, open_output, read_inputs
from tether.train.workloads import data_facts, offline_build


@dataclass
class KTORow:
    """An example, its mismatched (KL) sequence, and the reference log-probs of both."""

    example: TokenizedExample
    mismatched: TokenizedExample
    label: bool
    ref: float
    ref_mismatched: float

    def __len__(self) -> int:
        return max(len(self.example), len(self.mismatched))


def mismatched_sequences(examples: list[UnpairedExample], max_length: int) -> list[TokenizedExample]:
    """Prompt i with completion i + 1 (cyclically), its completion cut to fit ``max_length``."""
    out = []
    for i, example in enumerate(examples):
        other = examples[(i + 1) % len(examples)].completion_ids
        room = max(1, max_length - len(example.prompt_ids))
        out.append(completion_example(example.prompt_ids, other[:room]))
    return out


def collate_kto(rows: list[KTORow], pad_id: int) -> dict[str, torch.Tensor]:
    batch = collate([row.example for row in rows], pad_id)
    mismatched = collate([row.mismatched for row in rows], pad_id)
    batch.update({f"kl_{k}": v for k, v in mismatched.items()})
    batch["label"] = torch.tensor([row.label for row in rows], dtype=torch.bool)
    batch["ref"] = torch.tensor([row.ref for row in rows], dtype=torch.float32)
    batch["ref_kl"] = torch.tensor([row.ref_mismatched for row in rows], dtype=torch.float32)
    return batch


def count_examples(batch: dict[str, torch.Tensor]) -> int:
    return batch["input_ids"].shape[0]


class KTOObjective:
    """The loop's ``loss_fn`` for KTO."""

    def __init__(self, config: KTOConfig, accelerator: Any = None) -> None:
        self.config = config
        self.accelerator = accelerator

    def reference_point(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float]:
        """(z0 clamped at 0, the unclamped mean log-ratio) over the mismatched sequences of every process."""
        with torch.no_grad():
            kl_batch = {k[3:]: v for k, v in batch.items() if k.startswith("kl_")}
            policy_kl, _ = sequence_logprobs(model, kl_batch)
            stats = torch.stack([(policy_kl - batch["ref_kl"]).sum(), policy_kl.new_tensor(float(policy_kl.numel()))])
            if self.accelerator is not None and self.accelerator.num_processes > 1:
                stats = self.accelerator.reduce(stats, reduction="sum")
            mean = stats[0] / stats[1].clamp(min=1)
        return mean.clamp(min=0), mean.item()

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        z0, kl = self.reference_point(model, batch)
        policy, _ = sequence_logprobs(model, batch)
        desirable, ref = batch["label"], batch["ref"]
        out = kto_loss(
            policy[desirable],
            ref[desirable],
            policy[~desirable],
            ref[~desirable],
            z0=z0,
            beta=self.config.beta,
            desirable_weight=self.config.desirable_weight,
            undesirable_weight=self.config.undesirable_weight,
        )
        metrics = {"kto/z0": z0.item(), "kl_estimate": kl}
        if out.chosen_rewards.numel():
            metrics["rewards/chosen"] = out.chosen_rewards.mean().item()
            metrics["logps/chosen"] = policy[desirable].detach().mean().item()
        if out.rejected_rewards.numel():
            metrics["rewards/rejected"] = out.rejected_rewards.mean().item()
            metrics["logps/rejected"] = policy[~desirable].detach().mean().item()
        return out.losses.sum(), metrics


def run_kto(config: KTOConfig, *, console: Any = None) -> Path:
    """Train with KTO on unpaired data and write ``config.out``; returns out/model."""
    inputs = read_inputs(config, "unpaired")
    examples, report = encode_records(
        ChatEncoder(inputs.tokenizer),
        inputs.records,
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
        source=config.data,
        lines=inputs.read_report.lines,
    )
    if len(examples) < 2:
        raise DataError("KTO needs at least 2 examples with a completion token left after truncation", file=config.data)
    if console is not None and inputs.accelerator.is_main_process:
        desirable = sum(e.label for e in examples)
        console.print(
            f"[bold]kto[/]: {report.kept} examples ({desirable} desirable, {report.kept - desirable} undesirable; "
            f"{report.truncated} truncated, {report.dropped} dropped)"
        )
    targets = [completion_example(e.prompt_ids, e.completion_ids) for e in examples]
    mismatched = mismatched_sequences(examples, config.max_length)
    rows_held = [max(t, m, key=len) for t, m in zip(targets, mismatched, strict=True)]
    build = offline_build(config, **data_facts(rows_held, copies=2), kl_batch=True)
    config = check_memory(config, build, console=console if inputs.accelerator.is_main_process else None)
    model = load_trainable_model(config)
    sequences = [seq for pair in zip(targets, mismatched, strict=True) for seq in pair]
    scores = reference_scores(config, model, sequences, inputs, console=console).tolist()
    rows = [
        KTORow(t, m, e.label, scores[2 * i], scores[2 * i + 1])
        for i, (t, m, e) in enumerate(zip(targets, mismatched, examples, strict=True))
    ]
    open_output(config, inputs.accelerator)
    loop = TrainLoop(
        inputs.settings,
        model=model,
        examples=rows,
        collate=lambda batch: collate_kto(batch, inputs.tokenizer.pad_token_id),
        loss_fn=KTOObjective(config, inputs.accelerator),
        accelerator=inputs.accelerator,
        count_units=count_examples,
        tracker_config=config.model_dump(mode="json"),
    )
    loop.run()
    return finish(config, loop, inputs.tokenizer, report_title=f"tether kto: {config.out}")
