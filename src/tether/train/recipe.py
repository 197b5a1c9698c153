"""What every training recipe does around its loss: validate inputs, load, create outputs, finish.

A recipe (``sft.py``, ``preference.py``, ``kto.py``) is: :func:`read_inputs` (data checked and the output
folder checked before anything is loaded), its own encoding and loss, the memory pre-flight
(:func:`tether.train.preflight.check_memory`, which also resolves ``gradient_checkpointing: auto``),
:func:`load_trainable_model`, :func:`open_output`, a :class:`~tether.train.loop.TrainLoop`, then :func:`finish`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.config import RLOptions, TrainingConfig
from tether.data.readers import ReadReport, read_records_with_report
from tether.data.records import RecordKind
from tether.models.loading import adapter_base, load_model, load_tokenizer, resolve
from tether.models.lora import apply_lora, is_peft
from tether.train.allocator import return_freed_memory
from tether.train.loop import LoopSettings, make_accelerator, seed_everything
from tether.train.outputs import check_output, create_output, save_final_model, write_config


@dataclass
class RecipeInputs:
    records: list[Any]
    read_report: ReadReport
    settings: LoopSettings
    accelerator: Any
    tokenizer: Any


def read_inputs(config: TrainingConfig, kind: RecordKind, *, console: Any = None) -> RecipeInputs:
    """Read and validate the data, check the output folder, then set up accelerate and the tokenizer."""
    return_freed_memory()
    records, read_report = read_records_with_report(
        config.data,
        kind,
        config.data_format,
        split=config.split,
        limit=config.limit,
        on_invalid="skip" if config.skip_invalid else "error",
    )
    if read_report.skipped and console is not None:
        console.print(f"[yellow]skipped[/]: {read_report}")
    check_output(config.out, resume=config.resume, overwrite=config.overwrite, kind=type(config).command)
    settings = LoopSettings.from_config(config)
    accelerator = make_accelerator(settings)
    seed_everything(config.seed)
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code, revision=config.revision)
    return RecipeInputs(records, read_report, settings, accelerator, tokenizer)


def load_trainable_model(config: TrainingConfig | RLOptions) -> Any:
    """The model (with LoRA adapters when asked, gradient checkpointing when asked) from a config."""
    model = load_model(
        config.model,
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
        revision=config.revision,
        trainable_adapter=True,
    )
    return prepare_for_training(model, config)


def prepare_for_training(model: Any, config: TrainingConfig | RLOptions, *, task_type: str = "CAUSAL_LM") -> Any:
    """Gradient checkpointing and fresh LoRA adapters as the config asks (an adapter folder keeps its own).

    ``task_type="SEQ_CLS"`` for reward and value models: their new scalar head is trained in full.
    """
    if config.gradient_checkpointing is True:  # 'auto' is resolved by check_memory first
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora and not hasattr(model, "peft_config"):
        targets = config.lora_target_modules
        model = apply_lora(
            model,
            r=config.lora_r,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
            task_type=task_type,
        )
    return model


def has_fresh_adapters(config: TrainingConfig | RLOptions, model: Any) -> bool:
    """True when ``model`` carries LoRA adapters created for this run (so disabling them gives the start)."""
    return is_peft(model) and adapter_base(resolve(config.model)) is None


def open_output(config: TrainingConfig | RLOptions, accelerator: Any) -> None:
    """Create the output folder and write the resolved config (main process), once inputs are valid."""
    if accelerator.is_main_process:
        create_output(config.out, resume=config.resume, overwrite=config.overwrite, kind=type(config).command)
        write_config(config.out, config)
    accelerator.wait_for_everyone()


def finish(config: TrainingConfig, loop: Any, tokenizer: Any, *, report_title: str | None = None) -> Path:
    """Save ``out/model`` and write ``out/report.html``; returns the model folder."""
    accelerator = loop.accelerator
    target = Path(config.out) / "model"
    if accelerator.is_main_process:
        target = save_final_model(config.out, loop.unwrapped_model, tokenizer)
        from tether.report.training import write_training_report

        write_training_report(Path(config.out), title=report_title)
    accelerator.wait_for_everyone()
    return target
