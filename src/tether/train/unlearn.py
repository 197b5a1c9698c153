"""`tether unlearn`: the unlearning losses of :mod:`tether.losses.unlearning` on the shared training loop.

Each training row pairs one forget conversation with one retain conversation (a seeded permutation of the
retain set, cycled when it is shorter). A micro-batch is both halves padded apart; the loop normalises by
the forget rows of the optimizer step. What a method needs beyond the policy:

- NPO: the frozen start's log-prob of every forget sequence, scored once before step 1 and cached on disk
  (the DPO reference pass, :mod:`tether.train.reference`);
- RMU: only the chosen weights of the update layers train (everything else is frozen). The forget term
  covers the assistant tokens of each forget conversation: the chat template's system prompt and markers
  are the same in every row, and pushing them to the control vector in forget rows while the retain term
  holds them in place in retain rows would set the two terms against each other (the authors' forget
  data are raw documents, where every token is content). The retain term covers every real token. The frozen
  model's states on retain text come from the same model run with the start values of those weights
  (``torch.func.functional_call``), so no second copy of the model is held. The forward pass stops at the
  steered layer (single process), since nothing after it enters the loss.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tether.config.unlearning import UnlearnConfig
from tether.data.batching import collate
from tether.data.readers import read_records_with_report
from tether.data.tokenization import IGNORE_INDEX, ChatEncoder, TokenizedExample, encode_conversations
from tether.errors import DataError, UsageError
from tether.losses.unlearning import (
    control_vector,
    gradient_ascent_loss,
    masked_mse,
    npo_loss,
    retain_nll,
    simnpo_loss,
)
from tether.models.layers import decoder_layers
from tether.models.loading import inner_model
from tether.train.logprobs import sequence_logprobs
from tether.train.loop import TrainLoop
from tether.train.preference import reference_scores
from tether.train.preflight import check_memory
from tether.train.recipe import finish, load_trainable_model, open_output, read_inputs
from tether.train.workloads import offline_build

RETAIN_PREFIX = "retain_"


@dataclass(frozen=True)
class UnlearnRow:
    """One forget sequence, the retain sequence paired with it, and the start's log-prob of the forget one."""

    forget: TokenizedExample
    retain: TokenizedExample | None
    ref_logp: float = 0.0

    def __len__(self) -> int:
        return len(self.forget) + (len(self.retain) if self.retain is not None else 0)


def pair_rows(forget: Sequence[TokenizedExample], retain: Sequence[TokenizedExample], *, seed: int) -> list[UnlearnRow]:
    """Forget example i with retain example ``order[i % len(retain)]`` (``order`` a seeded permutation)."""
    if not retain:
        return [UnlearnRow(example, None) for example in forget]
    order = list(range(len(retain)))
    random.Random(seed).shuffle(order)
    return [UnlearnRow(example, retain[order[i % len(order)]]) for i, example in enumerate(forget)]


def collate_rows(rows: Sequence[UnlearnRow], pad_id: int) -> dict[str, torch.Tensor]:
    """The forget half as ``input_ids``/``labels``/``attention_mask``, the retain half under ``retain_*``, and
    ``ref_logps`` ``[B]``."""
    batch = collate([row.forget for row in rows], pad_id)
    retained = [row.retain for row in rows if row.retain is not None]
    if retained:
        batch.update({RETAIN_PREFIX + k: v for k, v in collate(retained, pad_id).items()})
    batch["ref_logps"] = torch.tensor([row.ref_logp for row in rows], dtype=torch.float32)
    return batch


def count_forget_rows(batch: dict[str, torch.Tensor]) -> int:
    return int(batch["input_ids"].shape[0])


def half(batch: dict[str, torch.Tensor], *, retain: bool) -> dict[str, torch.Tensor]:
    """The forget or the retain half of a collated batch, under the plain key names."""
    if not retain:
        return {k: batch[k] for k in ("input_ids", "labels", "attention_mask")}
    return {k.removeprefix(RETAIN_PREFIX): v for k, v in batch.items() if k.startswith(RETAIN_PREFIX)}


class _Stop(Exception):
    """Raised by the steered layer's hook: the rest of the forward pass does not enter RMU's loss."""


def layer_states(
    forward: Callable[..., Any], layer: torch.nn.Module, batch: dict[str, torch.Tensor], *, stop: bool
) -> torch.Tensor:
    """Hidden states ``[B, T, d]`` at the output of decoder ``layer`` when ``forward(**inputs)`` runs the model
    on ``batch``; with ``stop`` the forward pass ends there."""
    captured: list[torch.Tensor] = []

    def keep(_module: Any, _args: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple | list) else output)
        if stop:
            raise _Stop

    handle = layer.register_forward_hook(keep)
    try:
        forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured[0]


def train_only(model: Any, layers: Sequence[int], names: Sequence[str], *, lora: bool) -> list[str]:
    """Freeze every parameter but ``names`` inside decoder ``layers`` (their LoRA adapters with ``lora``).

    Returns the trained parameters' names; a UsageError when a layer or a name does not exist.
    """
    stack = decoder_layers(model)
    chosen: set[int] = set()
    trained: list[str] = []
    for index in layers:
        if not 0 <= index < len(stack):
            raise UsageError(f"rmu_update_layers: layer {index} does not exist (the model has {len(stack)})")
        params = dict(stack[index].named_parameters())
        for name in names:
            module = name.removesuffix(".weight").removesuffix(".bias")
            if lora:
                found = [k for k in params if k.startswith(module + ".") and "lora_" in k]
            else:
                found = [name] if name in params else []
            if not found:
                what = f"LoRA adapters on {module}" if lora else f"a parameter {name}"
                raise UsageError(f"rmu_params: decoder layer {index} has no {what} (it has {', '.join(params)})")
            for key in found:
                chosen.add(id(params[key]))
                trained.append(f"layers.{index}.{key}")
    for param in model.parameters():
        param.requires_grad_(id(param) in chosen)
    return trained


class UnlearnObjective:
    """The loss of one micro-batch for the configured method: (sum of per-row losses, metrics)."""

    def __init__(self, config: UnlearnConfig, model: Any, *, distributed: bool) -> None:
        self.method = config.method
        self.retain_lambda = config.retain_lambda
        self.beta, self.gamma = config.beta_value, config.gamma
        self.alpha = config.alpha
        if self.method == "rmu":
            stack = decoder_layers(model)
            if config.rmu_layer >= len(stack):
                raise UsageError(f"rmu_layer {config.rmu_layer} does not exist (the model has {len(stack)} layers)")
            self.layer = stack[config.rmu_layer]
            self.stop = not distributed  # DDP expects every forward to finish
            hidden = int(inner_model(model).config.hidden_size)
            self.control = control_vector(hidden, config.steering_coeff, seed=config.seed)
            self.start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            self.unwrapped = model  # the module before accelerate wraps it; parameter names are relative to it

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        if self.method == "rmu":
            return self._rmu(model, batch)
        forget = half(batch, retain=False)
        logps, lengths = sequence_logprobs(model, forget)
        if self.method in ("grad-ascent", "grad-diff"):
            losses = gradient_ascent_loss(logps, lengths)
        elif self.method == "npo":
            losses = npo_loss(logps, batch["ref_logps"].to(logps.dtype), self.beta)
        else:
            losses = simnpo_loss(logps, lengths, self.beta, self.gamma)
        metrics = {"forget_nll": float(-(logps.sum() / lengths.sum().clamp(min=1)).detach())}
        if self.retain_lambda > 0:
            r_logps, r_lengths = sequence_logprobs(model, half(batch, retain=True))
            losses = losses + self.retain_lambda * retain_nll(r_logps, r_lengths)
            metrics["retain_nll"] = float(-(r_logps.sum() / r_lengths.sum().clamp(min=1)).detach())
        return losses.sum(), metrics

    def _rmu(self, model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        forget, retain = half(batch, retain=False), half(batch, retain=True)
        states = layer_states(model, self.layer, forget, stop=self.stop)
        control = self.control.to(states.device)
        answer = forget["labels"] != IGNORE_INDEX  # the assistant tokens: what is to be forgotten
        forget_mse = masked_mse(states, control, answer)
        retained = layer_states(model, self.layer, retain, stop=self.stop)
        with torch.no_grad():
            frozen = layer_states(self._frozen, self.layer, retain, stop=True)
        retain_mse = masked_mse(retained, frozen, retain["attention_mask"])
        mask = answer
        metrics = {
            "rmu/forget_mse": float(forget_mse.mean().detach()),
            "rmu/retain_mse": float(retain_mse.mean().detach()),
            "rmu/forget_norm": float(states.detach()[mask].float().norm(dim=-1).mean()),
        }
        return (forget_mse + self.alpha * retain_mse).sum(), metrics

    def _frozen(self, **inputs: Any) -> Any:
        """The model with its trained weights at their start values (the frozen model of RMU). The start values
        were cloned before accelerate placed the model; they follow it to its device on first use."""
        from torch.func import functional_call

        device = inputs["input_ids"].device
        if any(value.device != device for value in self.start.values()):
            self.start = {n: value.to(device) for n, value in self.start.items()}
        return functional_call(self.unwrapped, self.start, args=(), kwargs=inputs)


def encode_set(encoder: ChatEncoder, records: list[Any], lines: list[int], path: str) -> list[TokenizedExample]:
    """Tokenized conversations of one file; a DataError when truncation leaves none with a trained token."""
    examples, _ = encode_conversations(encoder, records, source=path, lines=lines)
    if not examples:
        raise DataError(f"no example has a trained token left within max_length={encoder.max_length}", file=path)
    return examples


def read_retain(encoder: ChatEncoder, config: UnlearnConfig) -> list[TokenizedExample]:
    """The retain set, read and checked like the forget set (``limit`` applies to the forget set only)."""
    if config.retain is None:
        return []
    records, report = read_records_with_report(
        config.retain,
        "conversation",
        config.data_format,
        split=config.split,
        on_invalid="skip" if config.skip_invalid else "error",
    )
    return encode_set(encoder, records, report.lines, config.retain)


def run_unlearn(config: UnlearnConfig, *, console: Any = None) -> Path:
    """Unlearn ``config.forget`` while keeping ``config.retain``; writes ``config.out``, returns out/model."""
    inputs = read_inputs(config, "conversation")
    encoder = ChatEncoder(inputs.tokenizer, max_length=config.max_length)
    forget = encode_set(encoder, inputs.records, inputs.read_report.lines, config.forget)
    retain = read_retain(encoder, config)
    rows = pair_rows(forget, retain, seed=config.seed)
    accelerator = inputs.accelerator
    if console is not None and accelerator.is_main_process:
        console.print(f"[bold]unlearn[/] ({config.method}): {len(forget)} forget, {len(retain)} retain examples")
    facts = {
        "longest": max(len(e) for e in [*forget, *retain]),
        "examples": len(rows),
        "data_tokens": sum(len(row) for row in rows),
    }
    config = check_memory(
        config,
        offline_build(config, **facts, rows_per_example=2),
        console=console if accelerator.is_main_process else None,
    )
    model = load_trainable_model(config)
    if config.method == "rmu":
        layers = len(decoder_layers(model))
        if config.rmu_layer >= layers:
            raise UsageError(f"rmu_layer {config.rmu_layer} does not exist (the model has {layers} layers)")
        names = [n.strip() for n in config.rmu_params.split(",") if n.strip()]
        trained = train_only(model, config.rmu_update_layers, names, lora=config.lora)
        if console is not None and accelerator.is_main_process:
            console.print(f"rmu: training {len(trained)} tensors ({', '.join(trained)})")
    if config.method == "npo":
        scores = reference_scores(config, model, forget, inputs, console=console).tolist()
        rows = [UnlearnRow(row.forget, row.retain, score) for row, score in zip(rows, scores, strict=True)]
    open_output(config, accelerator)
    objective = UnlearnObjective(config, model, distributed=accelerator.num_processes > 1)
    loop = TrainLoop(
        inputs.settings,
        model=model,
        examples=rows,
        collate=lambda batch: collate_rows(batch, inputs.tokenizer.pad_token_id),
        loss_fn=objective,
        accelerator=accelerator,
        count_units=count_forget_rows,
        tracker_config=config.model_dump(mode="json"),
    )
    loop.run()
    return finish(config, loop, inputs.tokenizer, report_title=f"tether unlearn ({config.method}): {config.out}")
