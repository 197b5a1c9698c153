"""Demo, first version: a supervised safety fine-tune of the embedded model, measured before and after.

1. Answer the held-out prompts with the base model (greedy) and judge each answer for refusal.
2. Build SFT data: harmful training prompts get the team-written refusal; benign and borderline
   training prompts get the base model's own answer, repeated ``helpful_weight`` times, so that the
   fine-tune anchors existing helpful behaviour instead of learning to refuse everything.
3. Fine-tune (all weights by default, LoRA with ``--lora``) through ``tether sft``'s recipe.
4. Answer the held-out prompts again and print both, with the refusal rates per kind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tether.config import DemoConfig, SFTConfig
from tether.demo.dataset import DemoPrompt, load_demo_prompts
from tether.generation import GenerationEngine, SamplingParams
from tether.judges.refusal_patterns import is_refusal
from tether.models.loading import load_model, load_tokenizer
from tether.models.lora import is_peft
from tether.train.outputs import write_config
from tether.train.sft import run_sft


def answer(model_spec: str, prompts: list[DemoPrompt], max_new_tokens: int, tokenizer: Any) -> list[str]:
    model = load_model(model_spec)
    if is_peft(model):  # merged weights decode as fast as the base model
        model = model.merge_and_unload()
    engine = GenerationEngine(model, tokenizer, batch_size=96, progress=True)
    return engine.generate([p.prompt for p in prompts], SamplingParams(max_new_tokens=max_new_tokens))


def refusal_rates(prompts: list[DemoPrompt], answers: list[str]) -> dict[str, float]:
    rates = {}
    for kind in ("harmful", "benign", "borderline"):
        flags = [is_refusal(a) for p, a in zip(prompts, answers, strict=True) if p.kind == kind]
        rates[kind] = sum(flags) / len(flags) if flags else float("nan")
    return rates


def run_demo(config: DemoConfig, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_config(out, config)
    train = load_demo_prompts("train")
    heldout = load_demo_prompts("heldout")
    tokenizer = load_tokenizer(config.model)

    console.rule("[bold]1. baseline on held-out prompts")
    before = answer(config.model, heldout, config.max_new_tokens, tokenizer)

    console.rule("[bold]2. safety SFT data (refusals + the model's own helpful answers)")
    helpful = [p for p in train if p.kind != "harmful"]
    own = answer(config.model, helpful, config.max_new_tokens, tokenizer)
    own_answer = {p.prompt: a for p, a in zip(helpful, own, strict=True)}
    data = out / "sft_data.jsonl"
    with data.open("w") as f:
        for p in train:
            completion = p.refusal if p.kind == "harmful" else own_answer[p.prompt]
            # Helpful examples are repeated: they anchor the model's existing behaviour on safe requests.
            copies = 1 if p.kind == "harmful" else config.helpful_weight
            for _ in range(copies if completion else 0):
                f.write(json.dumps({"prompt": p.prompt, "completion": completion}) + "\n")

    console.rule(f"[bold]3. safety fine-tune ({'LoRA' if config.lora else 'all weights'})")
    sft = SFTConfig(
        model=config.model,
        data=str(data),
        out=out / "sft",
        lora=config.lora,
        lr=config.lr,
        batch_size=config.batch_size,
        max_steps=config.steps,
        max_length=256,
        seed=config.seed,
        warmup_ratio=0.1,
        overwrite=True,
    )
    model_dir = run_sft(sft, console=console)

    console.rule("[bold]4. fine-tuned model on the same held-out prompts")
    after = answer(str(model_dir), heldout, config.max_new_tokens, tokenizer)

    rates_before, rates_after = refusal_rates(heldout, before), refusal_rates(heldout, after)
    table = Table(title="Refusal rate on held-out prompts (phrase judge)")
    table.add_column("prompts")
    table.add_column("n", justify="right")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    labels = {
        "harmful": "harmful (want high)",
        "benign": "benign (want low)",
        "borderline": "scary-sounding but safe (want low)",
    }
    for kind, label in labels.items():
        n = sum(p.kind == kind for p in heldout)
        table.add_row(label, str(n), f"{rates_before[kind]:.0%}", f"{rates_after[kind]:.0%}")
    examples = Table(title="Held-out answers, before and after", show_lines=True)
    examples.add_column("prompt", ratio=2)
    examples.add_column("before", ratio=3)
    examples.add_column("after", ratio=3)
    for kind in labels:
        for p, b, a in [x for x in zip(heldout, before, after, strict=True) if x[0].kind == kind][:2]:
            examples.add_row(f"[{kind}] {p.prompt}", b[:240], a[:240])
    console.print(examples)
    console.print(table)
    result = {
        "refusal_rate_before": rates_before,
        "refusal_rate_after": rates_after,
        "heldout": [
            {"prompt": p.prompt, "kind": p.kind, "before": b, "after": a}
            for p, b, a in zip(heldout, before, after, strict=True)
        ],
        "seconds": time.perf_counter() - started,
    }
    (out / "demo_results.json").write_text(json.dumps(result, indent=2))
    console.print(f"results: {out / 'demo_results.json'}  ({result['seconds']:.0f} s)")
    return result
