"""DPO: `tether dpo` against TRL's DPOTrainer on the same model, pairs and batches, measured in one run.

Run (full benchmark; seven training runs, an estimated 15-20 minutes on 2 idle CPU cores)::

    .venv/bin/python benchmarks/compare_trl.py --json compare_trl.json

Smoke test::

    .venv/bin/python benchmarks/compare_trl.py --steps 2 --batch-size 2 --max-length 96 --engines tether,trl-cpu

What runs
---------
One fresh Python process per engine trains the embedded SmolLM2-135M-Instruct with the sigmoid DPO loss
(beta 0.1) for ``--steps`` optimizer steps of ``--batch-size`` pairs (no gradient accumulation), AdamW
(``torch.optim.AdamW``; TRL's default engine keeps its default, the fused variant), lr ``--lr`` constant,
no warm-up, gradient clipping at 1.0, weight decay 0, then saves the final weights (``tether dpo`` always
does; TRL is asked to with ``save_model``). SmolLM2 has no dropout, and TRL disables dropout anyway.

=================  ====================================================================================
engine             setup
=================  ====================================================================================
tether             ``tether dpo`` defaults: all weights, fp32, reference log-probs computed once before
                   training (eval mode, batches of 16 sequences) into an empty ``TETHER_REFERENCE_CACHE``
tether-gc          the same with ``--gradient-checkpointing``
tether-lora        ``--lora`` (r 16, alpha 32, all linear layers; reference = adapters disabled)
tether-lora-gc     ``--lora --gradient-checkpointing``
trl-default        ``DPOConfig`` defaults for everything not shared above: on CPU that is bf16 autocast,
                   gradient checkpointing, fused AdamW, and a second model copy as reference, run inside
                   every step
trl-cpu            tuned for CPU: fp32, no gradient checkpointing, ``adamw_torch``; reference in the step
trl-precompute     trl-cpu with ``precompute_ref_log_probs=True`` (reference pass before training)
=================  ====================================================================================

``--engines`` picks a subset. tether runs in process (``tether.train.preference.run_preference`` with a
``DPOConfig``: what ``tether dpo`` runs); the printed command line of each tether engine is the same run.

Data: the first ``steps * batch_size`` pairs of the HH-RLHF harmless-base test file (shared data, never
copied into the repo) that tether encodes without error and whose prompt plus longer completion fits in
``--max-length`` tokens, so that no engine truncates anything and truncation policies cannot differ. A
pair's length is what ``tether dpo``'s batch plan sorts by (``len(PairExample)``); the script rebuilds that
plan (``BatchPlan(lengths, batch_size, seed, group_by_length=True)``) and gives TRL the pairs already in
its order with ``train_sampling_strategy="sequential"``. Both engines put the B chosen rows, then the B
rejected rows, in one right-padded batch. The report checks at every step of every engine that the real
tokens and completion positions of the 2B rows are identical to the first engine's (a SHA-256 over them).

Loss parity
-----------
At step 1 the policy is the reference, so the loss is log 2 for every engine and says nothing; the
policy's ``logps/chosen`` and ``logps/rejected`` (mean over the batch's pairs of the *summed* completion
log-prob; both engines log this same quantity under the same name) and the pre-clipping gradient norm
of step 1 compare the forward and backward passes. Steps 2..N see the weights after identical updates, so
their losses and log-probs compare whole optimizer steps. Values are the engines' own: tether's
``metrics.jsonl``; TRL's loss returned by ``compute_loss`` and its ``logps/*`` metrics recorded at each
call, and ``grad_norm`` from its logs. The fp32 engines are expected to agree within ``LOSS_TOL`` (loss)
and ``LOGPS_TOL`` (log-probs, relative); trl-default runs under bf16 autocast and is shown, not judged.

Measurements
------------
- Step time. tether: its loop's own timer (``metrics.jsonl``: step time = tokens / tokens_per_s), which
  covers forward, backward, clipping and the optimizer step after the batch is collated. TRL: a
  ``TrainerCallback`` from ``on_step_begin`` to ``on_step_end`` (the Trainer collates the batch before
  ``on_step_begin``); engines with the reference in the step include its forward pass. Step 1 is warm-up
  and left out of every rate.
- Tokens: non-padding tokens (attention-mask sum) over the chosen and rejected rows, the prompt counted
  in both, read from each engine's own collated batches. Rate = sum over steps 2..N of tokens / sum of
  step times.
- Reference pass: seconds of tether's ``score_examples`` call (it runs only on a cache miss, and every
  tether child gets an empty cache folder) and of TRL's ``_precompute_ref_logps``; outside the step times.
- Peak RSS: ``ru_maxrss`` of that child alone (``os.wait4``): imports, data, model(s), reference pass,
  training and saving.
- Matmul peak: best of 10 timed fp32 2048 x 2048 ``torch.matmul`` with the runs' thread count, measured
  before and after the runs; the larger is the peak. The same for bf16 matrices: the MFU of an engine
  that computes in bf16 (autocast) is against the bf16 peak.

FLOPs
-----
The model FLOPs of ``sft_throughput.py`` (its docstring has the derivation), over the 2B rows of a step:
T = non-padding tokens, S = sum of squared row lengths, A = completion tokens (the positions with a
label); N matmul weights, H = V * d the tied LM head, L layers, d_attn = heads * head_dim::

    full: 6 N T + 12 L d_attn S + 6 H A        lora: (4 N + 6 N_lora) T + 12 L d_attn S + 4 H A

plus, for engines that run the reference inside the step, its forward pass: 2 N T + 4 L d_attn S + 2 H A.
A reference pass before training is excluded (it is timed apart). Gradient checkpointing's recomputation,
padding, and the head positions TRL scores beyond the labelled ones (every position on CPU) are not
counted: these are the model's FLOPs, not the executed ones. MFU = model FLOP/s / matmul peak.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    command_line,
    machine_info,
    machine_lines,
    markdown_table,
    matmul_peak,
    run_spec,
    step_timer,
    trust_notes,
    write_child_result,
)
from sft_throughput import HH_RLHF, model_flops, model_shape, require_data


@dataclasses.dataclass(frozen=True)
class Engine:
    name: str
    peer: str  # "tether" or "trl"
    mode: str = "full"  # "full" or "lora"
    gradient_checkpointing: bool | None = False  # None: the peer's default
    precision: str = "fp32"  # "fp32", "bf16" (autocast, fp32 weights and optimizer) or "default" (the peer's)
    precompute: bool = True  # reference log-probs before training (tether always)
    setup: str = ""


ENGINES = {
    e.name: e
    for e in (
        Engine("tether", "tether", setup="defaults: full, fp32, reference precomputed"),
        Engine("tether-gc", "tether", gradient_checkpointing=True, setup="--gradient-checkpointing"),
        Engine("tether-lora", "tether", mode="lora", setup="--lora"),
        Engine("tether-lora-gc", "tether", "lora", True, setup="--lora --gradient-checkpointing"),
        Engine("tether-bf16", "tether", precision="bf16", setup="--mixed-precision bf16"),
        Engine(
            "tether-bf16-gc",
            "tether",
            gradient_checkpointing=True,
            precision="bf16",
            setup="--mixed-precision bf16 --gradient-checkpointing",
        ),
        Engine(
            "trl-default",
            "trl",
            gradient_checkpointing=None,
            precision="default",
            precompute=False,
            setup="DPOConfig defaults (CPU: bf16 autocast, gradient checkpointing, fused AdamW, reference in step)",
        ),
        Engine("trl-cpu", "trl", precompute=False, setup="fp32, no gradient checkpointing, reference in step"),
        Engine("trl-precompute", "trl", setup="fp32, no gradient checkpointing, precompute_ref_log_probs"),
        Engine(
            "trl-bf16-precompute",
            "trl",
            precision="bf16",
            setup="trl-precompute under bf16 autocast (`bf16=True`, `adamw_torch`)",
        ),
    )
}
LOSS_TOL = 1e-3
"""Largest |loss difference| to an fp32 peer at any step that still counts as agreement."""
LOGPS_TOL = 1e-3
"""Largest relative difference of logps/chosen and logps/rejected (to the larger magnitude)."""


# -- data ------------------------------------------------------------------------------------------------
def prepare_pairs(path: Path, count: int, max_length: int, out: Path) -> dict[str, Any]:
    """Write the first ``count`` pairs of an HH-RLHF file that fit ``max_length`` untruncated to ``out``."""
    require_data(path)
    from tether.data import read_records
    from tether.data.pair_encoding import encode_pair
    from tether.data.tokenization import ChatEncoder
    from tether.errors import DataError
    from tether.models.embedded import DEFAULT_MODEL
    from tether.models.loading import load_tokenizer

    records = read_records(path, "preference", "hh-rlhf", on_invalid="skip")
    encoder = ChatEncoder(load_tokenizer(DEFAULT_MODEL))
    rows, lengths, too_long, refused = [], [], 0, 0
    tokens = completion = 0
    for pair in records:
        try:
            example = encode_pair(encoder, pair)
        except DataError:  # an ambiguous prompt/completion boundary: tether refuses such pairs
            refused += 1
            continue
        if len(example) > max_length:
            too_long += 1
            continue
        lengths.append(len(example))
        tokens += 2 * len(example.prompt_ids) + len(example.chosen_ids) + len(example.rejected_ids)
        completion += len(example.chosen_ids) + len(example.rejected_ids)
        rows.append({k: [m.model_dump() for m in getattr(pair, k)] for k in ("prompt", "chosen", "rejected")})
        if len(rows) == count:
            break
    if len(rows) < count:
        sys.exit(f"{path} has only {len(rows)} pairs that fit --max-length {max_length} untruncated; {count} needed")
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return {
        "source": str(path),
        "pairs": count,
        "records_read": len(records),
        "skipped_too_long": too_long,
        "skipped_refused": refused,
        "tokens": tokens,
        "completion_tokens": completion,
        "lengths": lengths,
    }


def batch_stats(input_ids, attention_mask, label_mask) -> dict[str, Any]:
    """Shape, token counts and a digest of the real tokens and labelled positions of a collated batch."""
    lengths = attention_mask.sum(dim=1)
    digest = hashlib.sha256()
    for row, n in enumerate(lengths.tolist()):
        digest.update(json.dumps([input_ids[row, :n].tolist(), label_mask[row, :n].int().tolist()]).encode())
    return {
        "rows": int(input_ids.shape[0]),
        "width": int(input_ids.shape[1]),
        "tokens": int(lengths.sum()),
        "sq": int((lengths * lengths).sum()),
        "labels": int(label_mask[:, 1:].sum()),
        "digest": digest.hexdigest()[:16],
    }


# -- children: one process per engine ------------------------------------------------------------------------
def child_main(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    engine = Engine(**spec["engine"])
    write_child_result(spec, run_tether(spec, engine) if engine.peer == "tether" else run_trl(spec, engine))


def run_tether(spec: dict[str, Any], engine: Engine) -> dict[str, Any]:
    import tether.train.preference as preference
    from tether.config import DPOConfig

    # Record each collated batch (outside the loop's timer) and time the reference pass.
    collated: list[dict[str, Any]] = []
    original_collate, original_score = preference.collate_pairs, preference.score_examples
    reference_s: list[float] = []

    def recording_collate(rows, pad_id):
        batch = original_collate(rows, pad_id)
        collated.append(batch_stats(batch["input_ids"], batch["attention_mask"], batch["labels"] != -100))
        return batch

    def timed_score(*args, **kwargs):
        started = time.perf_counter()
        scores = original_score(*args, **kwargs)
        reference_s.append(time.perf_counter() - started)
        return scores

    preference.collate_pairs, preference.score_examples = recording_collate, timed_score
    out = Path(spec["out"])
    s = spec["settings"]
    config = DPOConfig(
        model=spec["model"],
        data=spec["data"],
        out=out,
        loss="sigmoid",
        beta=s["beta"],
        batch_size=s["batch_size"],
        max_length=s["max_length"],
        max_prompt_length=s["max_length"] - 1,
        max_steps=s["steps"],
        lr=s["lr"],
        scheduler="constant",
        warmup_ratio=0.0,
        max_grad_norm=s["max_grad_norm"],
        weight_decay=0.0,
        seed=s["seed"],
        lora=engine.mode == "lora",
        gradient_checkpointing=bool(engine.gradient_checkpointing),
        mixed_precision="bf16" if engine.precision == "bf16" else "no",
        progress=False,
        overwrite=True,
    )
    preference.run_preference(config)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if len(collated) != len(metrics):
        raise SystemExit(f"tether collated {len(collated)} batches for {len(metrics)} logged steps")
    steps = []
    for m, c in zip(metrics, collated, strict=True):
        if m["tokens"] != c["tokens"]:
            raise SystemExit(f"step {m['step']}: metrics.jsonl has {m['tokens']} tokens, the batch {c['tokens']}")
        steps.append(
            {
                **c,
                "time_s": m["tokens"] / m["tokens_per_s"],
                "loss": m["loss"],
                "logps/chosen": m["logps/chosen"],
                "logps/rejected": m["logps/rejected"],
                "logps/ref_chosen": m.get("logps/ref_chosen"),
                "logps/ref_rejected": m.get("logps/ref_rejected"),
                "grad_norm": m["grad_norm"],
            }
        )
    return {
        "steps": steps,
        "reference_s": sum(reference_s) if reference_s else None,
        "reference_in_step": False,
        "command": tether_command(config),
    }


def tether_command(config: Any) -> str:
    """The `tether dpo` command line that runs the same training as ``config``."""
    flags = [
        f"--model {config.model}",
        f"--data {config.data}",
        f"--out {config.out}",
        f"--loss {config.loss} --beta {config.beta}",
        f"--batch-size {config.batch_size} --max-length {config.max_length}",
        f"--max-prompt-length {config.max_prompt_length} --max-steps {config.max_steps}",
        f"--lr {config.lr} --scheduler {config.scheduler} --max-grad-norm {config.max_grad_norm}",
        f"--seed {config.seed}",
    ]
    flags += ["--lora"] * config.lora + ["--gradient-checkpointing"] * config.gradient_checkpointing
    if config.mixed_precision != "no":
        flags.append(f"--mixed-precision {config.mixed_precision}")
    return "TETHER_REFERENCE_CACHE=$(mktemp -d) tether dpo " + " ".join(flags) + " --no-progress --overwrite"


def run_trl(spec: dict[str, Any], engine: Engine) -> dict[str, Any]:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer

    s = spec["settings"]
    rows = [json.loads(line) for line in Path(spec["data"]).read_text().splitlines()]
    dataset = Dataset.from_list([rows[i] for i in spec["order"]])  # tether's batch plan, read sequentially
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    fields = {f.name for f in dataclasses.fields(trl.DPOConfig)}
    if "train_sampling_strategy" not in fields:
        raise SystemExit("this transformers has no train_sampling_strategy; TRL could not read tether's batch order")
    kwargs: dict[str, Any] = {
        "output_dir": spec["out"],
        "max_steps": s["steps"],
        "per_device_train_batch_size": s["batch_size"],
        "gradient_accumulation_steps": 1,
        "learning_rate": s["lr"],
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": s["max_grad_norm"],
        "beta": s["beta"],
        "loss_type": ["sigmoid"],
        "max_length": s["max_length"],
        "seed": s["seed"],
        "data_seed": s["seed"],
        "train_sampling_strategy": "sequential",
        "use_cpu": not torch.cuda.is_available(),
        "logging_strategy": "steps",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
    }
    if engine.precision != "default":
        kwargs.update(bf16=engine.precision == "bf16", fp16=False, optim="adamw_torch")
    if engine.gradient_checkpointing is not None:
        kwargs["gradient_checkpointing"] = engine.gradient_checkpointing
    if engine.precompute:
        kwargs["precompute_ref_log_probs"] = True
    args = trl.DPOConfig(**kwargs)

    reference_s: list[float] = []
    original_precompute = trl.DPOTrainer._precompute_ref_logps

    def timed_precompute(self, *a, **k):
        started = time.perf_counter()
        result = original_precompute(self, *a, **k)
        reference_s.append(time.perf_counter() - started)
        return result

    trl.DPOTrainer._precompute_ref_logps = timed_precompute

    recorder = step_timer("grad_norm")
    trainer = trl.DPOTrainer(
        model=spec["model_dir"], args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[recorder]
    )
    collated: list[dict[str, Any]] = []
    losses: list[dict[str, Any]] = []
    inner_collator, inner_loss = trainer.data_collator, trainer.compute_loss

    def recording_collator(features):
        batch = inner_collator(features)
        collated.append(batch_stats(batch["input_ids"], batch["attention_mask"], batch["completion_mask"] == 1))
        return batch

    def recording_loss(model, inputs, return_outputs=False, num_items_in_batch=None):
        out = inner_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        metrics = trainer._metrics["train"]
        record = {
            "loss": float((out[0] if return_outputs else out).detach()),
            "logps/chosen": metrics["logps/chosen"][-1],
            "logps/rejected": metrics["logps/rejected"][-1],
        }
        if "ref_chosen_logps" in inputs:
            record["logps/ref_chosen"] = float(inputs["ref_chosen_logps"].float().mean())
            record["logps/ref_rejected"] = float(inputs["ref_rejected_logps"].float().mean())
        losses.append(record)
        return out

    trainer.data_collator, trainer.compute_loss = recording_collator, recording_loss
    model = trainer.model
    setup = {
        "dtype": str(model.dtype),
        "attn_implementation": model.config._attn_implementation,
        "bf16": args.bf16,
        "gradient_checkpointing": args.gradient_checkpointing,
        "optim": str(args.optim.value if hasattr(args.optim, "value") else args.optim),
        "precompute_ref_log_probs": args.precompute_ref_log_probs,
        "reference_model_copy": trainer.ref_model is not None,
    }
    trainer.train()
    trainer.save_model(str(Path(spec["out"]) / "model"))
    n = len(recorder.times)
    if not (len(collated) == len(losses) == n) or len(recorder.logs) < n:
        raise SystemExit(
            f"TRL recorded {len(collated)} batches, {len(losses)} losses, {n} step times, "
            f"{len(recorder.logs)} grad norms"
        )
    steps = [
        {**c, **loss, "time_s": t, "grad_norm": g}
        for c, loss, t, g in zip(
            collated, losses, recorder.times, [float(log["grad_norm"]) for log in recorder.logs], strict=False
        )
    ]
    return {
        "steps": steps,
        "reference_s": sum(reference_s) if reference_s else None,
        "reference_in_step": not engine.precompute,
        "trl_setup": setup,
        "trl_version": trl.__version__,
    }


# -- parent ------------------------------------------------------------------------------------------------
def reference_flops(shape: dict[str, int], step: dict[str, Any]) -> float:
    """Forward-only FLOPs of the reference model over a step's rows (head at the labelled positions)."""
    n, h, attention = shape["N_matmul"], shape["H_head"], shape["layers"] * shape["d_attn"]
    return 2 * n * step["tokens"] + 4 * attention * step["sq"] + 2 * h * step["labels"]


def summarize(run: dict[str, Any], shape: dict[str, int]) -> dict[str, Any]:
    steps = run["steps"]
    measured = steps[1:] if len(steps) > 1 else steps
    seconds = sum(s["time_s"] for s in measured)
    tokens = sum(s["tokens"] for s in measured)
    flops = sum(
        model_flops(shape, run["mode"], s) + (reference_flops(shape, s) if run["reference_in_step"] else 0.0)
        for s in measured
    )
    padded = sum(s["rows"] * s["width"] for s in measured)
    return {
        "measured_steps": len(measured),
        "seconds": seconds,
        "tokens": tokens,
        "completion_tokens": sum(s["labels"] for s in measured),
        "tokens_per_s": tokens / seconds,
        "model_gflops_per_s": flops / seconds / 1e9,
        "padding_share": 1 - tokens / padded,
        "step_times": [s["time_s"] for s in steps],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    trl_here = importlib.util.find_spec("trl") is not None
    default_engines = [name for name, e in ENGINES.items() if e.peer == "tether" or trl_here]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per run; step 1 is warm-up")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per step (2x rows)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-5, help="constant learning rate, no warm-up")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--engines", default=",".join(default_engines), help=f"comma-separated: {','.join(ENGINES)}")
    parser.add_argument("--data", type=Path, default=HH_RLHF, help="HH-RLHF JSONL file")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, default=None, help="write every figure and setting here")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.max_length < 8:
        parser.error("--steps and --batch-size must be >= 1 and --max-length >= 8")
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if unknown := [e for e in args.engines if e not in ENGINES]:
        parser.error(f"unknown engine(s) {unknown}; choose from {', '.join(ENGINES)}")
    if not args.engines:
        parser.error("--engines is empty")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        child_main(args.child)
        return
    require_data(args.data)
    if any(ENGINES[e].peer == "trl" for e in args.engines) and importlib.util.find_spec("trl") is None:
        sys.exit("TRL is not installed: pip install -e '.[bench]', or leave the trl-* engines out of --engines")

    from tether.config import DPOConfig
    from tether.data.batching import BatchPlan
    from tether.models.embedded import DEFAULT_MODEL
    from tether.models.loading import resolve

    command = command_line()
    defaults = {name: field.default for name, field in DPOConfig.model_fields.items()}
    model_dir = resolve(DEFAULT_MODEL)  # converts the embedded GGUF once, outside every measured process
    machine = machine_info()
    shape = model_shape(model_dir, defaults["lora_r"])
    settings = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "lr": args.lr,
        "beta": args.beta,
        "max_grad_norm": 1.0,
        "seed": args.seed,
        "engines": args.engines,
    }
    print(f"$ {command}")
    print(f"machine: {machine['cpu']}, {machine['usable_cores']} cores, torch threads {machine['torch_threads']}")

    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tether-bench-dpo-") as tmp:
        work = Path(tmp)
        data_path = work / "pairs.jsonl"
        data = prepare_pairs(args.data, args.steps * args.batch_size, args.max_length, data_path)
        plan = BatchPlan(tuple(data["lengths"]), args.batch_size, args.seed, defaults["group_by_length"])
        order = [i for batch in plan.batches(0) for i in batch]  # the batches `tether dpo` will train, in order
        peak_before, bf16_before = matmul_peak(), matmul_peak(dtype="bfloat16")
        print(f"matmul 2048^2: fp32 {peak_before['gflops_best']:.1f}, bf16 {bf16_before['gflops_best']:.1f} GFLOP/s")
        for name in args.engines:
            engine = ENGINES[name]
            spec = {
                "engine": dataclasses.asdict(engine),
                "model": DEFAULT_MODEL,
                "model_dir": model_dir,
                "data": str(data_path),
                "order": order,
                "settings": settings,
                "out": str(work / name),
                "result": str(work / f"{name}.json"),
            }
            cache = work / f"{name}-reference-cache"  # empty: the reference pass is part of the run
            run = run_spec(__file__, work, name, spec, env={"TETHER_REFERENCE_CACHE": str(cache)})
            run.update(dataclasses.asdict(engine), engine=name)
            run["summary"] = summarize(run, shape)
            runs.append(run)
            s = run["summary"]
            times = s["step_times"][1:] or s["step_times"]
            reference = f", reference pass {run['reference_s']:.1f} s" if run["reference_s"] is not None else ""
            print(
                f"  {_rate(s['tokens_per_s'])} tokens/s, measured steps {min(times):.2f}-{max(times):.2f} s"
                f"{reference}, peak RSS {run['peak_rss_gib']:.2f} GiB, {run['wall_s']:.0f} s in all"
            )
            if "command" in run:
                print(f"  same run from the CLI: {run['command']}")
        peak_after, bf16_after = matmul_peak(), matmul_peak(dtype="bfloat16")
    machine["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    peak = max(peak_before["gflops_best"], peak_after["gflops_best"])
    bf16 = {"before": bf16_before, "after": bf16_after}
    bf16["peak_gflops"] = max(bf16_before["gflops_best"], bf16_after["gflops_best"])
    report = build_report(args, command, machine, shape, data, settings, peak_before, peak_after, peak, runs, bf16)
    report["wall_s"] = time.perf_counter() - started
    print()
    print(report["markdown"])
    print(f"\nwall time of the benchmark: {report['wall_s']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({k: v for k, v in report.items() if k != "markdown"}, indent=2) + "\n")
        print(f"wrote {args.json}")


def goal_lines(runs: list[dict[str, Any]], trl_runs: list[dict[str, Any]]) -> list[str]:
    """Issue 3's goal, at least 2x TRL's tokens/s at under a third of its peak RSS, per TRL reference."""
    references = {"fastest fp32 TRL": [r for r in trl_runs if r["precision"] == "fp32"], "fastest TRL": trl_runs}
    lines = []
    for label, candidates in references.items():
        if not candidates:
            continue
        ref = max(candidates, key=lambda r: r["summary"]["tokens_per_s"])
        speed, memory = ref["summary"]["tokens_per_s"], ref["peak_rss_gib"]
        met = [
            f"{r['engine']} ({r['summary']['tokens_per_s'] / speed:.2f}x at {r['peak_rss_gib'] / memory:.2f}x)"
            for r in runs
            if r["peer"] == "tether"
            and r["mode"] == "full"
            and r["summary"]["tokens_per_s"] >= 2 * speed
            and r["peak_rss_gib"] < memory / 3
        ]
        lines.append(
            f"goal vs the {label} ({ref['engine']}: {_rate(speed)} tokens/s, {memory:.2f} GiB), full fine-tuning "
            f">= 2x tokens/s at < 1/3 peak RSS: " + (f"met by {', '.join(met)}" if met else "not met")
        )
    return lines


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def parity(base: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """Step-by-step agreement of ``run`` with ``base``: same batches, loss and log-prob differences."""
    pairs = list(zip(base["steps"], run["steps"], strict=False))
    same_batches = len(base["steps"]) == len(run["steps"]) and all(
        (a["digest"], a["tokens"], a["labels"]) == (b["digest"], b["tokens"], b["labels"]) for a, b in pairs
    )
    loss = max(abs(a["loss"] - b["loss"]) for a, b in pairs)
    logps = max(_rel(a[k], b[k]) for a, b in pairs for k in ("logps/chosen", "logps/rejected"))
    refs = [
        _rel(a[k], b[k])
        for a, b in pairs
        for k in ("logps/ref_chosen", "logps/ref_rejected")
        if a.get(k) is not None and b.get(k) is not None
    ]
    return {
        "same_batches": same_batches,
        "max_rel_ref_logps_diff": max(refs) if refs else None,
        "max_abs_loss_diff": loss,
        "max_rel_logps_diff": logps,
        "step1_rel_grad_norm_diff": _rel(pairs[0][0]["grad_norm"], pairs[0][1]["grad_norm"]),
        "within_tolerance": same_batches and loss <= LOSS_TOL and logps <= LOGPS_TOL,
    }


def computes_in_bf16(run: dict[str, Any]) -> bool:
    """bf16 autocast: asked for, or TRL's default on this machine."""
    return run["precision"] == "bf16" or bool(run.get("trl_setup", {}).get("bf16"))


def build_report(args, command, machine, shape, data, settings, peak_before, peak_after, peak, runs, bf16) -> dict:
    base = next((r for r in runs if r["engine"] == "tether"), runs[0])
    trl_runs = [r for r in runs if r["peer"] == "trl"]
    baseline = max(trl_runs, key=lambda r: r["summary"]["tokens_per_s"], default=None)  # TRL's fastest
    rows, notes = [], []
    for run in runs:
        s = run["summary"]
        ratio = s["tokens_per_s"] / baseline["summary"]["tokens_per_s"] if baseline else None
        memory = run["peak_rss_gib"] / baseline["peak_rss_gib"] if baseline else None
        run["tokens_per_s_vs_baseline"], run["peak_rss_vs_baseline"] = ratio, memory
        run["mfu"] = s["model_gflops_per_s"] / (bf16["peak_gflops"] if computes_in_bf16(run) else peak)
        reference = "in step" if run["reference_in_step"] else run["reference_s"]
        rows.append(
            [
                run["engine"],
                run["setup"],
                _rate(s["tokens_per_s"]),
                f"{run['peak_rss_gib']:.2f}",
                f"{reference:.1f}" if isinstance(reference, float) else reference,
                f"{s['model_gflops_per_s']:.1f}",
                f"{100 * run['mfu']:.1f}% {'bf16' if computes_in_bf16(run) else 'fp32'}",
                None if ratio is None else f"{ratio:.2f}x",
                None if memory is None else f"{memory:.2f}x",
            ]
        )
    headers = ["engine", "setup", "tokens/s", "peak RSS GiB", "reference pass s", "model GFLOP/s", "MFU", "", ""]
    if baseline:
        headers[-2:] = [f"tokens/s vs {baseline['engine']}", f"peak RSS vs {baseline['engine']}"]
        notes += goal_lines(runs, trl_runs)

    # Parity: every engine against tether (or the first engine); losses only for full fine-tuning.
    detail = []
    for run in runs:
        run["parity"] = parity(base, run) if run is not base else None
        p = run["parity"]
        if p is not None and not p["same_batches"]:
            notes.append(f"{run['engine']}: batches DIFFER from {base['engine']}'s (tokens or token ids)")
        if run["mode"] != base["mode"]:
            continue
        for k, step in enumerate(run["steps"], start=1):
            other = base["steps"][k - 1] if k <= len(base["steps"]) else None
            detail.append(
                [
                    k,
                    run["engine"],
                    step["tokens"],
                    f"{step['loss']:.6f}",
                    f"{step['logps/chosen']:.4f}",
                    f"{step['logps/rejected']:.4f}",
                    f"{step['grad_norm']:.4f}",
                    None if run is base or other is None else f"{step['loss'] - other['loss']:+.2e}",
                ]
            )
    detail.sort(key=lambda row: row[0])
    delta_header = f"loss - {base['engine']}"
    verdicts = []
    for run in runs:
        p = run["parity"]
        if p is None or run["mode"] != base["mode"]:
            continue
        judged = run["precision"] == "fp32"
        verdicts.append(
            f"{run['engine']} vs {base['engine']}: same batches {'yes' if p['same_batches'] else 'NO'}; "
            f"max |loss diff| {p['max_abs_loss_diff']:.2e}, max relative logps diff {p['max_rel_logps_diff']:.2e}, "
            f"step-1 grad norm relative diff {p['step1_rel_grad_norm_diff']:.2e}"
            + (
                f", precomputed reference logps relative diff {p['max_rel_ref_logps_diff']:.2e}"
                if p["max_rel_ref_logps_diff"] is not None
                else ""
            )
            + ": "
            + (
                ("agree" if p["within_tolerance"] else "DO NOT AGREE")
                + f" (tolerance {LOSS_TOL:g} loss, {LOGPS_TOL:g} relative logps)"
                if judged
                else "not judged (bf16 autocast)"
            )
        )
    if len(runs) > 1 and all(r["parity"]["same_batches"] for r in runs if r is not base):
        notes.append(
            f"every engine trained the same pairs at every step as {base['engine']} (same real token ids and "
            "completion positions in each of the 2B rows; nothing truncated)"
        )
    for run in runs:
        if run["peer"] == "trl" and run["trl_setup"]:
            t = run["trl_setup"]
            notes.append(
                f"{run['engine']}: TRL {run['trl_version']}, weights {t['dtype']}, {t['attn_implementation']} "
                f"attention, bf16 {t['bf16']}, gradient checkpointing {t['gradient_checkpointing']}, optim "
                f"{t['optim']}, precompute {t['precompute_ref_log_probs']}, reference copy {t['reference_model_copy']}"
            )
    step_tokens = [s["tokens"] for s in base["steps"]]
    lines = [
        "## DPO: tether vs TRL DPOTrainer" if any(r["peer"] == "trl" for r in runs) else "## DPO: tether",
        "",
        *machine_lines(
            command,
            machine,
            peak_before,
            peak_after,
            peak,
            extra_peaks=[
                f"bf16 matmul peak (same shape): {bf16['before']['gflops_best']:.1f} GFLOP/s before, "
                f"{bf16['after']['gflops_best']:.1f} after; peak = {bf16['peak_gflops']:.1f} GFLOP/s (the MFU of "
                "engines that compute in bf16 is against this peak)",
            ],
        ),
        f"Model: embedded smollm2-135m-instruct; N = {shape['N_matmul']:,} matmul weights, head V*d = "
        f"{shape['H_head']:,}, L = {shape['layers']}, d_attn = {shape['d_attn']}, N_lora = {shape['N_lora']:,}",
        "",
        f"Data: {data['pairs']} HH-RLHF harmless-base test pairs that fit {args.max_length} tokens untruncated "
        f"({data['skipped_too_long']} longer ones skipped), {data['tokens']} tokens over chosen + rejected rows "
        f"(prompt counted in both), {data['completion_tokens']} completion tokens; {args.steps} steps of "
        f"{args.batch_size} pairs (tokens per step {step_tokens}), step 1 excluded from rates",
        "",
        f"Training: sigmoid DPO, beta {args.beta}, AdamW lr {args.lr:g} constant, no warm-up, clip 1.0, "
        "weight decay 0, same batches in the same order in every engine",
        "",
        markdown_table(headers, rows),
        "",
        "Model FLOPs over the 2B rows of a step: full 6N*T + 12*L*d_attn*sum(n^2) + 6*V*d*A, LoRA "
        "(4N + 6N_lora)*T + 12*L*d_attn*sum(n^2) + 4*V*d*A, plus the reference forward 2N*T + 4*L*d_attn*sum(n^2) "
        "+ 2*V*d*A where it runs in the step (T tokens, A completion tokens; see the script's docstring).",
        "",
        "Loss parity, step by step (logps: mean summed completion log-prob; grad norm before clipping):",
        "",
        markdown_table(
            ["step", "engine", "tokens", "loss", "logps/chosen", "logps/rejected", "grad norm", delta_header],
            detail,
        ),
        "",
    ]
    lines += [f"- {v}" for v in verdicts]
    notes += trust_notes(machine, args.steps)
    lines += [f"- {n}" for n in notes]
    return {
        "command": command,
        "machine": machine,
        "settings": settings,
        "tolerances": {"loss_abs": LOSS_TOL, "logps_rel": LOGPS_TOL},
        "matmul": {"before": peak_before, "after": peak_after, "peak_gflops": peak, "bf16": bf16},
        "model": shape,
        "data": data,
        "runs": runs,
        "markdown": "\n".join(lines),
    }


if __name__ == "__main__":
    main()
