"""Paired preference training: ``tether dpo`` (sigmoid, cdpo, robust, hinge, ipo, bco), ``orpo``, ``simpo``.

Per micro-batch of B pairs, one forward pass scores 2B rows: the B prompt + chosen sequences, then the
B prompt + rejected ones (padded together, batches grouped by length). Summed completion log-probs come
from :func:`tether.train.logprobs.sequence_logprobs` (LM head at labelled positions only, in chunks), the
reference log-probs from the on-disk table computed once before training (:mod:`tether.train.reference`),
and the loss from :data:`tether.losses.PAIRED_LOSSES`. The loop normalises by the pairs of the whole
optimizer step, so the update is the mean loss over pairs.

Logged per step: the loss, implicit rewards (chosen, rejected, margin, accuracy = share of pairs with
chosen reward > rejected reward), policy and reference log-probs (mean summed log-prob per completion),
``kl_estimate`` and each extra term of the loss. ``kl_estimate`` is the mean per-token
``log pi(y|x) - log pi_ref(y|x)`` over the completions; when they are samples of the policy (on-policy
pairs, as in ``tether demo``) it is the Monte-Carlo estimate of KL(pi || pi_ref) per token; on offline
data it measures how far the policy's likelihood of the data has drifted.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tether.config import DPOConfig, ORPOConfig, PairOptions, PreferenceConfig, ReferenceConfig, SimPOConfig
from tether.data.batching import collate
from tether.data.pair_encoding import PairExample, encode_records
from tether.data.tokenization import ChatEncoder
from tether.errors import DataError
from tether.losses import (
    LossOutput,
    PreferenceBatchLogps,
    PreferenceLossParams,
    RunningMean,
    paired_loss,
)
from tether.train.logprobs import sequence_logprobs
from tether.train.loop import TrainLoop
from tether.train.preflight import check_memory
from tether.train.recipe import (
    RecipeInputs,
    finish,
    has_fresh_adapters,
    load_trainable_model,
    open_output,
    read_inputs,
)
from tether.train.reference import cache_key, cached_scores, model_fingerprint, score_examples
from tether.train.workloads import data_facts, offline_build


@dataclass
class PairRow:
    """A tokenized pair and its reference log-probs (None for reference-free losses)."""

    pair: PairExample
    ref_chosen: float | None = None
    ref_rejected: float | None = None

    def __len__(self) -> int:
        return len(self.pair)


def collate_pairs(rows: list[PairRow], pad_id: int) -> dict[str, torch.Tensor]:
    """Chosen rows first, then rejected rows, in one right-padded batch; plus reference log-probs, and the
    soft labels ``p_chosen`` (NaN for a pair without one) when any pair of the batch has one."""
    sequences = [row.pair.sequences() for row in rows]
    batch = collate([c for c, _ in sequences] + [r for _, r in sequences], pad_id)
    if rows[0].ref_chosen is not None:
        batch["ref_chosen"] = torch.tensor([row.ref_chosen for row in rows], dtype=torch.float32)
        batch["ref_rejected"] = torch.tensor([row.ref_rejected for row in rows], dtype=torch.float32)
    if any(row.pair.p_chosen is not None for row in rows):
        soft = [math.nan if row.pair.p_chosen is None else row.pair.p_chosen for row in rows]
        batch["p_chosen"] = torch.tensor(soft, dtype=torch.float32)
    return batch


def count_pairs(batch: dict[str, torch.Tensor]) -> int:
    return batch["input_ids"].shape[0] // 2


def loss_name(config: PreferenceConfig) -> str:
    """The loss of the paired-loss registry: DPO's ``--loss``, else the command (orpo, simpo)."""
    return config.loss if isinstance(config, DPOConfig) else config.command


def loss_params(config: PreferenceConfig) -> PreferenceLossParams:
    """The loss's hyper-parameters from the fields its command has (each loss reads only its own)."""
    if isinstance(config, DPOConfig):
        return PreferenceLossParams(beta=config.beta, label_smoothing=config.label_smoothing)
    if isinstance(config, SimPOConfig):
        return PreferenceLossParams(beta=config.beta, gamma=config.gamma)
    if isinstance(config, ORPOConfig):
        return PreferenceLossParams(beta=config.beta, orpo_lambda=config.orpo_lambda)
    raise TypeError(f"not a paired preference config: {type(config).__name__}")


def rpo_alpha(config: PreferenceConfig) -> float:
    """Weight of the added chosen-NLL term (RPO); ORPO has its own NLL term and no such option."""
    return config.rpo_alpha if isinstance(config, PairOptions) else 0.0


@torch.no_grad()
def pair_metrics(out: LossOutput, logps: PreferenceBatchLogps) -> dict[str, float]:
    """Per-step means of the rewards, log-probs, KL estimate and extra loss terms of a micro-batch.

    Everything is stacked and copied to the host once (one device sync per micro-batch, not one per metric).
    """
    chosen, rejected = out.chosen_rewards, out.rejected_rewards
    values = {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/margin": (chosen - rejected).mean(),
        "rewards/accuracy": (chosen > rejected).float().mean(),
        "logps/chosen": logps.policy_chosen.mean(),
        "logps/rejected": logps.policy_rejected.mean(),
    }
    if logps.ref_chosen is not None:
        ref_chosen, ref_rejected, chosen_lengths, rejected_lengths = logps.require(
            "ref_chosen", "ref_rejected", "chosen_lengths", "rejected_lengths"
        )
        values["logps/ref_chosen"] = ref_chosen.mean()
        values["logps/ref_rejected"] = ref_rejected.mean()
        drift = (logps.policy_chosen - ref_chosen).sum() + (logps.policy_rejected - ref_rejected).sum()
        values["kl_estimate"] = drift / (chosen_lengths.sum() + rejected_lengths.sum()).clamp(min=1)
    for name, value in out.terms.items():
        values[f"terms/{name}"] = value.float().mean()
    stacked = torch.stack([v.detach().float().reshape(()) for v in values.values()]).tolist()
    return dict(zip(values, stacked, strict=True))


class PairObjective:
    """The loop's ``loss_fn`` for paired losses: one forward over chosen + rejected, then the loss."""

    def __init__(self, name: str, params: PreferenceLossParams, *, rpo_alpha: float = 0.0, accelerator: Any = None):
        self.loss = paired_loss(name, nll_alpha=rpo_alpha)
        self.params = params
        self.accelerator = accelerator
        self.bco_mean = RunningMean() if name == "bco" else None

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        sums, counts = sequence_logprobs(model, batch)
        b = sums.shape[0] // 2
        logps = PreferenceBatchLogps(
            sums[:b],
            sums[b:],
            batch.get("ref_chosen"),
            batch.get("ref_rejected"),
            counts[:b],
            counts[b:],
            batch.get("p_chosen"),
        )
        params = self.params
        if self.bco_mean is not None:
            params = dataclasses.replace(params, delta=self._bco_delta(self.bco_mean, logps))
        out = self.loss(logps, params)
        metrics = pair_metrics(out, logps)
        if self.bco_mean is not None:
            metrics["bco/delta"] = params.delta
        return out.losses.sum(), metrics

    @torch.no_grad()
    def _bco_delta(self, mean: RunningMean, logps: PreferenceBatchLogps) -> float:
        """BCO's reward shift: the running mean of every implicit reward so far, all processes included."""
        ref_chosen, ref_rejected = logps.require("ref_chosen", "ref_rejected")
        rewards = self.params.beta * torch.cat([logps.policy_chosen - ref_chosen, logps.policy_rejected - ref_rejected])
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            rewards = self.accelerator.gather(rewards)
        return mean.update(rewards)


def reference_scores(
    config: ReferenceConfig, model: Any, sequences: list, inputs: RecipeInputs, *, console: Any = None
) -> torch.Tensor:
    """Reference log-probs of ``sequences``, from the on-disk cache or computed once now."""
    spec = config.ref_model or config.model
    fingerprint = model_fingerprint(spec, revision=config.revision, dtype=config.dtype)
    if config.mixed_precision != "no":
        fingerprint["mixed_precision"] = config.mixed_precision
    key = cache_key(fingerprint, sequences)
    pad_id = inputs.tokenizer.pad_token_id
    accelerator = inputs.accelerator

    def compute() -> torch.Tensor:
        if config.ref_model is None:
            model.to(accelerator.device)
            return score_examples(
                model,
                sequences,
                pad_id=pad_id,
                batch_size=config.ref_batch_size,
                accelerator=accelerator,
                disable_adapters=has_fresh_adapters(config, model),
                progress=config.progress and accelerator.is_main_process,
            )
        from tether.models.loading import load_model

        reference = load_model(config.ref_model, dtype=config.dtype, trust_remote_code=config.trust_remote_code)
        reference.to(accelerator.device)
        try:
            return score_examples(
                reference, sequences, pad_id=pad_id, batch_size=config.ref_batch_size, accelerator=accelerator
            )
        finally:
            del reference

    scores, hit = cached_scores(
        key,
        compute,
        enabled=config.ref_cache,
        is_main=accelerator.is_main_process,
        barrier=accelerator.wait_for_everyone,
    )
    if console is not None and accelerator.is_main_process:
        console.print(
            f"reference log-probs: {'cache hit' if hit else 'computed'} ({len(sequences)} sequences, key {key})"
        )
    return scores


def check_soft_labels(name: str, records: list, lines: list[int], source: str) -> None:
    """Robust DPO needs each soft label's flip rate 1 - p_chosen below 1/2: a DataError names the first record
    with p_chosen <= 0.5 (before any model loads). Losses other than cdpo and robust ignore soft labels."""
    if name != "robust":
        return
    for record, line in zip(records, lines, strict=True):
        if record.p_chosen is not None and record.p_chosen <= 0.5:
            raise DataError(
                f"robust DPO needs p_chosen > 0.5 (its flip rate 1 - p_chosen must be below 1/2), got "
                f"{record.p_chosen}; swap chosen and rejected where p_chosen < 0.5, drop ties, or use --loss cdpo",
                file=source,
                line=line,
                field="p_chosen",
            )


def run_preference(config: PreferenceConfig, *, console: Any = None) -> Path:
    """Train with a paired preference loss and write ``config.out``; returns out/model."""
    name = loss_name(config)
    inputs = read_inputs(config, "preference")
    check_soft_labels(name, inputs.records, inputs.read_report.lines, config.data)
    encoder = ChatEncoder(inputs.tokenizer)
    pairs, report = encode_records(
        encoder,
        inputs.records,
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
        source=config.data,
        lines=inputs.read_report.lines,
    )
    if not pairs:
        raise DataError("no pair has a completion token left after truncation; raise --max-length", file=config.data)
    if console is not None and inputs.accelerator.is_main_process:
        console.print(
            f"[bold]{type(config).command}[/] ({name}): {report.kept} pairs "
            f"({report.truncated} truncated, {report.dropped} dropped: no completion token within max_length)"
        )
    build = offline_build(config, **data_facts(pairs, copies=2), rows_per_example=2)
    config = check_memory(config, build, console=console if inputs.accelerator.is_main_process else None)
    model = load_trainable_model(config)
    rows = [PairRow(pair) for pair in pairs]
    if isinstance(config, DPOConfig):  # every DPO loss has a reference (orpo and simpo are reference-free)
        sequences = [seq for pair in pairs for seq in pair.sequences()]
        scores = reference_scores(config, model, sequences, inputs, console=console).tolist()
        rows = [PairRow(pair, scores[2 * i], scores[2 * i + 1]) for i, pair in enumerate(pairs)]
    open_output(config, inputs.accelerator)
    objective = PairObjective(name, loss_params(config), rpo_alpha=rpo_alpha(config), accelerator=inputs.accelerator)
    loop = TrainLoop(
        inputs.settings,
        model=model,
        examples=rows,
        collate=lambda batch: collate_pairs(batch, inputs.tokenizer.pad_token_id),
        loss_fn=objective,
        accelerator=inputs.accelerator,
        count_units=count_pairs,
        tracker_config=config.model_dump(mode="json"),
        stateful={"bco_mean": objective.bco_mean} if objective.bco_mean is not None else None,
    )
    loop.run()
    return finish(config, loop, inputs.tokenizer, report_title=f"tether {type(config).command} ({name}): {config.out}")
