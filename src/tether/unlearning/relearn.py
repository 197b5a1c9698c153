"""The relearning attack: a few fine-tuning steps on part of the forget set, then the rest measured again.

Shallow unlearning hides knowledge rather than removing it, and a little fine-tuning on related data brings
it back (Lynch et al. 2024, "Eight Methods to Evaluate Robust Unlearning in LLMs"; Deeb and Roger 2024 for
RMU). The forget facts of each entity are split in file order, every other one into the fine-tuning half
and the others into the measured half, so what is measured was never in the attack's data. The attack is
one `tether sft` run (all weights, or an adapter folder's adapters; constant learning rate) that saves a
checkpoint at every step of the schedule; each checkpoint's weights are loaded into the model and the
measured half scored again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import reduce
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from tether.config import SFTConfig
from tether.data.benchmarks.facts import Fact
from tether.errors import TetherError
from tether.stats import rate
from tether.train.checkpoint import checkpoint_dirs
from tether.unlearning.config import UnlearnEvalConfig
from tether.unlearning.measure import cloze_correct, cloze_samples


def relearn_split(facts: Sequence[Fact]) -> tuple[list[Fact], list[Fact]]:
    """(fine-tuned on, measured): the forget facts of each entity alternately, in file order."""
    seen: dict[str, int] = {}
    tuned: list[Fact] = []
    measured: list[Fact] = []
    for fact in facts:
        if fact.split != "forget":
            continue
        index = seen.get(fact.entity, 0)
        seen[fact.entity] = index + 1
        (tuned if index % 2 == 0 else measured).append(fact)
    return tuned, measured


def relearning_curve(
    model: Any, tokenizer: Any, facts: Sequence[Fact], config: UnlearnEvalConfig, folder: Path
) -> dict[str, Any]:
    """Accuracy of the measured half after each step of ``config.relearn_steps`` (0: before the attack)."""
    tuned, measured = relearn_split(facts)
    if not tuned or not measured:
        return {"skipped": "the fact set needs at least two forget facts of one entity"}
    samples = cloze_samples(tokenizer, measured)

    def accuracy() -> dict[str, float]:
        return rate(cloze_correct(model, tokenizer, samples, batch_size=config.batch_size)).to_dict()

    curve = [{"step": 0, "accuracy": accuracy()}] if 0 in config.relearn_steps else []
    steps = [s for s in config.relearn_steps if s > 0]
    if steps:
        every = reduce(math.gcd, steps)
        data = folder / "relearn-data.jsonl"
        folder.mkdir(parents=True, exist_ok=True)
        data.write_text("".join(json.dumps({"prompt": f.question, "completion": f.answer}) + "\n" for f in tuned))
        from tether.train.sft import run_sft

        run_sft(
            SFTConfig(
                model=config.model,
                revision=config.revision,
                dtype=config.dtype,
                trust_remote_code=config.trust_remote_code,
                data=str(data),
                out=folder / "sft",
                max_steps=max(steps),
                save_every=every,
                keep_checkpoints=max(steps) // every,
                lr=config.relearn_lr,
                scheduler="constant",
                batch_size=config.relearn_batch_size,
                seed=config.seed,
                gradient_checkpointing=False,
                memory_budget=0,
                progress=config.progress,
                overwrite=True,
            )
        )
        start = {name: p.detach().clone() for name, p in model.named_parameters()}
        saved = {int(p.name.split("-")[-1]): p for p in checkpoint_dirs(folder / "sft" / "checkpoints")}
        try:
            for step in steps:
                result = model.load_state_dict(load_file(str(saved[step] / "trainable.safetensors")), strict=False)
                if result.unexpected_keys:
                    raise TetherError(
                        f"relearning checkpoint {saved[step]} holds weights the model lacks: "
                        f"{', '.join(result.unexpected_keys[:5])}"
                    )
                curve.append({"step": step, "accuracy": accuracy()})
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(start[name])
    return {"tuned_on": len(tuned), "measured": len(measured), "curve": curve}
