"""Supervised fine-tuning: next-token cross-entropy on assistant tokens only.

    L = - (1 / |A|) * sum_{t in A} log p_theta(y_t | y_<t),

where A is the set of assistant-turn tokens of every conversation in the optimizer step (the chat
template's system and user turns, and the generation prompt, carry no loss).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tether.config import SFTConfig
from tether.data.batching import collate, packed
from tether.data.readers import read_records_with_report
from tether.data.tokenization import ChatEncoder, encode_conversations
from tether.errors import DataError
from tether.models.loading import load_model, load_tokenizer
from tether.models.lora import apply_lora
from tether.train.logprobs import final_hidden_states, selected_logprobs
from tether.train.loop import LoopSettings, TrainLoop, make_accelerator, seed_everything
from tether.train.outputs import check_output, create_output, save_final_model, write_config


def sft_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of negative log-likelihoods of the labelled tokens of a micro-batch."""
    hidden, head = final_hidden_states(model, batch)
    logps, _ = selected_logprobs(hidden, head, batch["labels"])
    return -logps.sum(), {}


def load_trainable_model(config: Any) -> Any:
    """The model (with LoRA adapters when asked) from a config's model and LoRA options."""
    model = load_model(
        config.model,
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
        revision=config.revision,
        trainable_adapter=True,
    )
    if config.lora and not hasattr(model, "peft_config"):
        targets = config.lora_target_modules
        model = apply_lora(
            model,
            r=config.lora_r,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
        )
    return model


def run_sft(config: SFTConfig, *, console: Any = None) -> Path:
    """Validate data, train, and write ``config.out`` (see ``tether.train.outputs``). Returns out/model."""
    records, read_report = read_records_with_report(
        config.data, "conversation", config.data_format, split=config.split, limit=config.limit
    )
    check_output(config.out, resume=config.resume, overwrite=config.overwrite)
    settings = LoopSettings.from_config(config)
    accelerator = make_accelerator(settings)
    seed_everything(config.seed)
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code, revision=config.revision)
    encoder = ChatEncoder(tokenizer, max_length=config.max_length)
    examples, report = encode_conversations(encoder, records, source=config.data, lines=read_report.lines)
    if not examples:
        raise DataError("no example has a trained token left after truncation", file=config.data)
    if console is not None and accelerator.is_main_process:
        console.print(
            f"[bold]sft[/]: {report.kept} examples ({report.truncated} truncated, "
            f"{report.dropped_truncated} dropped: no assistant token within max_length={config.max_length})"
        )
    rows = packed(examples, config.max_length) if config.packing else examples
    model = load_trainable_model(config)
    if accelerator.is_main_process:  # inputs are valid: only now is anything written
        create_output(config.out, resume=config.resume, overwrite=config.overwrite)
        write_config(config.out, config)
    accelerator.wait_for_everyone()
    loop = TrainLoop(
        settings,
        model=model,
        examples=rows,
        collate=lambda batch: collate(batch, tokenizer.pad_token_id),
        loss_fn=sft_loss,
        accelerator=accelerator,
        tracker_config=config.model_dump(mode="json"),
    )
    loop.run()
    target = config.out / "model"
    if accelerator.is_main_process:
        target = save_final_model(config.out, loop.unwrapped_model, tokenizer)
    accelerator.wait_for_everyone()
    return target
