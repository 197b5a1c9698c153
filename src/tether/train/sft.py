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
from tether.data.tokenization import ChatEncoder, encode_conversations
from tether.errors import DataError
from tether.train.logprobs import final_hidden_states, selected_logprobs
from tether.train.loop import TrainLoop
from tether.train.preflight import check_memory
from tether.train.recipe import finish, load_trainable_model, open_output, read_inputs
from tether.train.workloads import data_facts, offline_build


def sft_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of negative log-likelihoods of the labelled tokens of a micro-batch."""
    hidden, head = final_hidden_states(model, batch)
    logps, _ = selected_logprobs(hidden, head, batch["labels"])
    return -logps.sum(), {}


def run_sft(config: SFTConfig, *, console: Any = None) -> Path:
    """Validate data, train, and write ``config.out`` (see ``tether.train.outputs``). Returns out/model."""
    inputs = read_inputs(config, "conversation")
    tokenizer, accelerator = inputs.tokenizer, inputs.accelerator
    encoder = ChatEncoder(tokenizer, max_length=config.max_length)
    examples, report = encode_conversations(encoder, inputs.records, source=config.data, lines=inputs.read_report.lines)
    if not examples:
        raise DataError("no example has a trained token left after truncation", file=config.data)
    if console is not None and accelerator.is_main_process:
        console.print(
            f"[bold]sft[/]: {report.kept} examples ({report.truncated} truncated, "
            f"{report.dropped_truncated} dropped: no assistant token within max_length={config.max_length})"
        )
    rows = packed(examples, config.max_length) if config.packing else examples
    main_console = console if accelerator.is_main_process else None
    config = check_memory(config, offline_build(config, **data_facts(rows)), console=main_console)
    model = load_trainable_model(config)
    open_output(config, accelerator)
    loop = TrainLoop(
        inputs.settings,
        model=model,
        examples=rows,
        collate=lambda batch: collate(batch, tokenizer.pad_token_id),
        loss_fn=sft_loss,
        accelerator=accelerator,
        tracker_config=config.model_dump(mode="json"),
    )
    loop.run()
    return finish(config, loop, tokenizer, report_title=f"tether sft: {config.out}")
