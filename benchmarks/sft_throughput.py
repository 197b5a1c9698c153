"""SFT training throughput of `tether sft` against TRL's SFTTrainer, measured in one run on this machine.

Run (full benchmark; four training runs, about 10 minutes on 2 idle CPU cores)::

    .venv/bin/python benchmarks/sft_throughput.py --json sft_throughput.json

Smoke test::

    .venv/bin/python benchmarks/sft_throughput.py --steps 2 --batch-size 2 --max-length 64

What runs
---------
For each mode (``full``: every weight trained; ``lora``: peft LoRA on all linear layers with tether's
defaults r=16, alpha=32, dropout=0) and each engine (tether, then each peer), one fresh Python process
trains the embedded SmolLM2-135M-Instruct (fp32, SDPA attention, no gradient checkpointing) for
``--steps`` optimizer steps of ``--batch-size`` conversations (no gradient accumulation), with AdamW
(``torch.optim.AdamW`` in both engines), lr 1e-4 cosine, no warm-up, clipping at 1.0, and saves the final
weights (``tether sft`` always does; TRL is asked to with ``save_model``).

Data: the first ``steps * batch_size`` pairs of the HH-RLHF harmless-base test file (shared data, never
copied into the repo) whose chosen response starts within ``--max-length`` tokens of the prompt + chosen
conversation. Both engines get exactly these conversations, truncate them at the end to
``--max-length`` and pad each batch to its longest row. tether groups batches by length (its default
batch plan); TRL reads the conversations in the order of that plan with
``train_sampling_strategy="sequential"``, so step k of both engines trains the same batch (the report
checks this step by step) and the warm-up step left out is the same. The loss is on every assistant turn
in both: tether labels the assistant turns itself; TRL's ``assistant_only_loss`` needs
``{% generation %}`` markers that SmolLM2's template lacks, so TRL gets the same template with markers
around each assistant message and its end-of-turn (TRL's own advice; the script checks that the rendered
text is identical for every conversation, and the report compares token and label counts step by step).
``--trl-loss completion`` instead gives TRL prompt/completion rows (prompt = every turn before the last
assistant one) with ``completion_only_loss``: only the last turn is trained there, so label counts differ.

Measurements
------------
- Step time. tether: its loop's own timer (``metrics.jsonl``: step time = tokens / tokens_per_s), which
  covers forward, backward, clipping and the optimizer step, after the batch is collated. TRL: a
  ``TrainerCallback`` from ``on_step_begin`` to ``on_step_end``; the Trainer fetches and collates the
  batch before ``on_step_begin``. Step 1 is warm-up and left out of every rate.
- Tokens: non-padding tokens (attention-mask sum). Label tokens: positions with a next-token label
  (``labels[:, 1:] != -100``), the units of the loss. Both are read from each engine's own batches
  (tether: ``metrics.jsonl``, cross-checked against its collated batches; TRL: its data collator's
  output). Rate = sum over steps 2..N of tokens / sum of step times.
- Peak RSS: ``ru_maxrss`` of that child alone (``os.wait4``), i.e. the whole process: imports, data,
  model, training and saving.
- Matmul peak: best of 10 timed fp32 ``torch.matmul`` of two 2048 x 2048 matrices (2 n^3 FLOPs) after
  3 warm-up calls, with the same thread count as the runs, measured before and after the runs; the
  larger is the peak. The CPU may be shared: the load average is printed before and after.

FLOPs
-----
Notation: N = weights of the decoder's matrix multiplications (q, k, v, o, gate, up, down of every
layer; the embedding lookup costs nothing, norms and activations are elementwise and not counted);
H = V * d, the LM head (tied to the input embedding in SmolLM2); L layers; d_attn = heads * head_dim;
N_lora = sum over adapted linears of r * (d_in + d_out). Per optimizer step: T = non-padding tokens;
S = sum over rows of n_i^2 (n_i = real tokens of row i); A = label tokens.

A matmul costs 2 FLOPs per weight per token forward; backward costs 2 more for the gradient of its
input and 2 more for the gradient of its weight (skipped for frozen weights).

Model FLOPs (the work the model needs; one definition for both engines; padding and recomputation are
not counted; achieved GFLOP/s and MFU use these)::

    full: 6 N T + 12 L d_attn S + 6 H A
    lora: (4 N + 6 N_lora) T + 12 L d_attn S + 4 H A

- Attention scores: QK^T and AV cost 2 n d_attn each per token per layer forward, backward twice that,
  so 12 L d_attn n per token, over the full n x n matrix (the PaLM/Chinchilla convention; causal masking
  would halve it); summed over a row of n tokens that is 12 L d_attn n^2, hence S.
- LM head, counted per *label* token A, not per token: SFT's loss needs log p only where there is a
  label, and tether computes it only there (``final_hidden_states`` runs the model with
  ``logits_to_keep=1``, then ``selected_logprobs`` gathers the labelled positions and projects just those
  through the head). Full fine-tuning trains the tied head/embedding weight: 2 + 2 + 2 = 6 H per label
  token. LoRA leaves the head frozen (peft's ``all-linear`` skips the output layer) but still
  back-propagates through it: 4 H.
- LoRA: frozen base weights cost forward + input gradient, 4 N; the adapters 6 N_lora. (Layer 0's q, k, v
  read the frozen embedding, so their input gradient is skipped: < 0.3 % of 4 N, ignored.)

Executed FLOPs (in the JSON, with HFU = executed / peak): what each engine runs, padding included:
body over B * W positions and attention over B * W^2 per step (B rows padded to width W), and the head over
the positions each engine projects, with the forward recomputed once in backward by both engines
(tether's ``torch.utils.checkpoint`` per chunk, TRL's chunked log-prob kernel): 8 H (full) or 6 H (LoRA)
per projected position. tether projects the A labelled positions; TRL 1.16's fused head projects only
labelled positions on CUDA/XPU with Triton, and every position, B * (W - 1), elsewhere (so on CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import (
    SHARED_DATA,
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

HH_RLHF = SHARED_DATA / "hh-rlhf" / "harmless-base-test.shared.jsonl"
MODES = ("full", "lora")
PEERS = ("trl",)
IGNORE_INDEX = -100


# -- data ------------------------------------------------------------------------------------------------
def require_data(path: Path) -> None:
    if not path.is_file():
        sys.exit(
            f"benchmark data not found: {path}\n"
            "This benchmark reads the shared HH-RLHF harmless-base test file (../shared/data beside the checkout, "
            "see its README); pass --data PATH to an HH-RLHF JSONL file ({'chosen', 'rejected'} transcripts)."
        )


def prepare_data(path: Path, count: int, max_length: int, out: Path) -> dict[str, Any]:
    """Write the first ``count`` usable prompt+chosen conversations of an HH-RLHF file to ``out`` (JSONL)."""
    require_data(path)
    from tether.data import Conversation, read_records
    from tether.data.tokenization import ChatEncoder
    from tether.errors import DataError
    from tether.models.embedded import DEFAULT_MODEL
    from tether.models.loading import load_tokenizer

    pairs = read_records(path, "preference", "hh-rlhf", on_invalid="skip")
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    encoder, untruncated = ChatEncoder(tokenizer, max_length=max_length), ChatEncoder(tokenizer)
    rows, lengths, squares, labels, truncated, skipped = [], [], 0, 0, 0, 0
    for pair in pairs:
        conversation = Conversation(messages=list(pair.prompt) + list(pair.chosen))
        try:
            example = encoder.encode(conversation)
            full = untruncated.encode(conversation)
        except DataError:  # an ambiguous prompt/completion boundary: tether refuses such rows
            skipped += 1
            continue
        # Keep rows whose chosen (last) response starts within max_length, so that every row is trained by
        # both engines in both TRL loss modes (TRL drops rows left without a label, as tether does).
        if example is None or full is None or len(encoder.prompt_ids(list(pair.prompt))) >= max_length:
            skipped += 1
            continue
        truncated += len(full) > max_length
        lengths.append(len(example))
        squares += len(example) ** 2
        labels += sum(1 for label in example.labels[1:] if label != IGNORE_INDEX)
        rows.append({"messages": [m.model_dump() for m in conversation.messages]})
        if len(rows) == count:
            break
    if len(rows) < count:
        sys.exit(f"{path} has only {len(rows)} usable conversations at --max-length {max_length}; {count} needed")
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return {
        "source": str(path),
        "conversations": count,
        "pairs_read": len(pairs),
        "skipped_before_count": skipped,
        "truncated": truncated,
        "tokens": sum(lengths),
        "label_tokens": labels,
        "mean_sq_per_token": squares / sum(lengths),
        "lengths": lengths,
    }


# -- model shape and FLOPs --------------------------------------------------------------------------------
def model_shape(model_dir: str, lora_r: int) -> dict[str, int]:
    """Matmul weight counts of the model, from its config on the meta device (no weights are loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    head = model.get_output_embeddings()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    text = config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return {
        "params_total": sum(p.numel() for p in model.parameters()),
        "N_matmul": sum(m.weight.numel() for m in linears),
        "H_head": head.weight.numel(),
        "N_lora": sum(lora_r * (m.in_features + m.out_features) for m in linears),
        "lora_r": lora_r,
        "layers": text.num_hidden_layers,
        "d_attn": text.num_attention_heads * head_dim,
        "d_model": text.hidden_size,
        "vocab": text.vocab_size,
        "tied_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
    }


def model_flops(shape: dict[str, int], mode: str, step: dict[str, Any]) -> float:
    """Model FLOPs of one optimizer step (formulas in the module docstring)."""
    n, h = shape["N_matmul"], shape["H_head"]
    attention = 12 * shape["layers"] * shape["d_attn"] * step["sq"]
    if mode == "full":
        return 6 * n * step["tokens"] + attention + 6 * h * step["labels"]
    return (4 * n + 6 * shape["N_lora"]) * step["tokens"] + attention + 4 * h * step["labels"]


def executed_flops(shape: dict[str, int], mode: str, step: dict[str, Any], head_positions: int) -> float:
    """FLOPs the engine runs in one step: padding included, head forward recomputed once in backward."""
    n, h = shape["N_matmul"], shape["H_head"]
    positions = step["rows"] * step["width"]
    attention = 12 * shape["layers"] * shape["d_attn"] * step["rows"] * step["width"] ** 2
    body = 6 * n if mode == "full" else 4 * n + 6 * shape["N_lora"]
    return body * positions + attention + (8 if mode == "full" else 6) * h * head_positions


def batch_stats(batch: dict[str, Any]) -> dict[str, int]:
    """Rows, padded width, real tokens, sum of squared row lengths and label tokens of a collated batch."""
    lengths = batch["attention_mask"].sum(dim=1)
    return {
        "rows": int(batch["input_ids"].shape[0]),
        "width": int(batch["input_ids"].shape[1]),
        "tokens": int(lengths.sum()),
        "sq": int((lengths * lengths).sum()),
        "labels": int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()),
    }


# -- children: one process per (engine, mode) --------------------------------------------------------------
def child_main(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    write_child_result(spec, run_tether(spec) if spec["engine"] == "tether" else run_trl(spec))


def run_tether(spec: dict[str, Any]) -> dict[str, Any]:
    import tether.train.sft as sft
    from tether.config import SFTConfig

    # Record each collated micro-batch (outside the loop's timer) for the attention term and padding.
    collated: list[dict[str, int]] = []
    original = sft.collate

    def recording_collate(examples, pad_id):
        batch = original(examples, pad_id)
        collated.append(batch_stats(batch))
        return batch

    sft.collate = recording_collate
    out = Path(spec["out"])
    config = SFTConfig(
        model=spec["model"],
        data=spec["data"],
        out=out,
        lora=spec["mode"] == "lora",
        batch_size=spec["batch_size"],
        max_length=spec["max_length"],
        max_steps=spec["steps"],
        seed=spec["seed"],
        progress=False,
        overwrite=True,
    )
    sft.run_sft(config)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [
        {"tokens": int(m["tokens"]), "labels": int(m["units"]), "time_s": m["tokens"] / m["tokens_per_s"]}
        for m in metrics
    ]
    consistent = len(collated) == len(steps) and all(
        c["tokens"] == s["tokens"] and c["labels"] == s["labels"] for c, s in zip(collated, steps, strict=False)
    )
    if consistent:
        for s, c in zip(steps, collated, strict=True):
            s.update(rows=c["rows"], width=c["width"], sq=c["sq"])
    return {"steps": steps, "batch_stats": consistent, "head_positions": "labels", "loss_mode": "assistant turns"}


ASSISTANT_TURN = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
MARKED_TURN = (
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
    "{{ message['content'] + '<|im_end|>' + '\n' }}{% endgeneration %}{% else %}" + ASSISTANT_TURN + "{% endif %}"
)


def marked_template(template: str | None) -> str | None:
    """SmolLM2's ChatML template with ``{% generation %}`` around each assistant message and its end-of-turn
    (the tokens tether trains), or None for another template."""
    if not isinstance(template, str) or template.count(ASSISTANT_TURN) != 1:
        return None
    return template.replace(ASSISTANT_TURN, MARKED_TURN)


def run_trl(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    conversations = [json.loads(line)["messages"] for line in Path(spec["data"]).read_text().splitlines()]
    conversations = [conversations[i] for i in spec["order"]]  # tether's batch plan, read sequentially
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    fields = {f.name for f in dataclasses.fields(trl.SFTConfig)}
    loss_mode, note = spec["trl_loss"], ""
    if loss_mode in ("auto", "assistant"):
        patched = marked_template(tokenizer.chat_template) if "assistant_only_loss" in fields else None
        same = patched is not None and all(
            tokenizer.apply_chat_template(m, tokenize=False)
            == tokenizer.apply_chat_template(m, tokenize=False, chat_template=patched)
            for m in conversations
        )
        if same:
            tokenizer.chat_template = patched
            loss_mode, note = "assistant", "assistant_only_loss, template + {% generation %} markers (same text)"
        elif loss_mode == "assistant":
            raise SystemExit("TRL assistant_only_loss is not possible for this template/TRL version")
        else:
            loss_mode = "completion"
    if loss_mode == "assistant":
        dataset = Dataset.from_list([{"messages": m} for m in conversations])
    else:
        dataset = Dataset.from_list([{"prompt": m[:-1], "completion": m[-1:]} for m in conversations])
        note = "completion_only_loss on prompt/completion rows (last assistant turn only)"

    # Older transformers have no sequential option: group by length there (same padding, other order).
    sampling = (
        {"train_sampling_strategy": "sequential"} if "train_sampling_strategy" in fields else {"group_by_length": True}
    )
    train = spec["train"]
    args = trl.SFTConfig(
        output_dir=spec["out"],
        max_steps=spec["steps"],
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1,
        learning_rate=train["lr"],
        lr_scheduler_type=train["scheduler"],
        warmup_steps=0,
        weight_decay=train["weight_decay"],
        max_grad_norm=train["max_grad_norm"],
        optim="adamw_torch",
        seed=spec["seed"],
        data_seed=spec["seed"],
        max_length=spec["max_length"],
        packing=False,
        padding_free=False,
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        use_cpu=not torch.cuda.is_available(),
        assistant_only_loss=loss_mode == "assistant",
        completion_only_loss=loss_mode == "completion" or None,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        **sampling,
    )
    peft_config = None
    if spec["mode"] == "lora":
        from peft import LoraConfig

        lora = spec["lora"]
        peft_config = LoraConfig(
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=lora["target_modules"],
            task_type="CAUSAL_LM",
        )

    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32, attn_implementation="sdpa")
    timer = step_timer()
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[timer],
    )
    collated: list[dict[str, int]] = []
    inner = trainer.data_collator

    def recording_collator(features):
        batch = inner(features)
        collated.append(batch_stats(batch))
        return batch

    trainer.data_collator = recording_collator
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    trainer.train()
    trainer.save_model(str(Path(spec["out"]) / "model"))
    try:
        from trl.kernels.chunked_logprob import _use_triton

        scores_all = not _use_triton(trainer.model.device)
    except ImportError:  # older TRL: the head projects every position (full logits)
        scores_all = True
    steps = [{**c, "time_s": t} for c, t in zip(collated, timer.times, strict=False)]
    return {
        "steps": steps,
        "batch_stats": True,
        "head_positions": "all" if scores_all else "labels",
        "loss_mode": note,
        "trainable_params": trainable,
        "trl_version": trl.__version__,
    }


# -- parent ------------------------------------------------------------------------------------------------
def summarize(run: dict[str, Any], shape: dict[str, int], mean_sq_per_token: float) -> dict[str, Any]:
    steps = run["steps"]
    measured = steps[1:] if len(steps) > 1 else steps
    seconds = sum(s["time_s"] for s in measured)
    tokens = sum(s["tokens"] for s in measured)
    labels = sum(s["labels"] for s in measured)
    model = executed = 0.0
    exact = run.get("batch_stats", False)
    for s in measured:
        if not exact:  # attention term from the data set's token-weighted mean length (see warning)
            s = {**s, "sq": s["tokens"] * mean_sq_per_token}
        model += model_flops(shape, run["mode"], s)
        if exact:
            head = s["labels"] if run["head_positions"] == "labels" else s["rows"] * (s["width"] - 1)
            executed += executed_flops(shape, run["mode"], s, head)
    padded = sum(s["rows"] * s["width"] for s in measured) if exact else None
    return {
        "measured_steps": len(measured),
        "seconds": seconds,
        "tokens": tokens,
        "label_tokens": labels,
        "tokens_per_s": tokens / seconds,
        "label_tokens_per_s": labels / seconds,
        "model_gflops_per_s": model / seconds / 1e9,
        "executed_gflops_per_s": executed / seconds / 1e9 if exact else None,
        "padding_share": 1 - tokens / padded if padded else None,
        "all_steps_tokens": sum(s["tokens"] for s in steps),
        "all_steps_label_tokens": sum(s["labels"] for s in steps),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    trl_here = importlib.util.find_spec("trl") is not None
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run; step 1 is warm-up")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: full,lora")
    parser.add_argument("--peers", default="trl" if trl_here else "none", help="comma-separated peers (trl) or 'none'")
    parser.add_argument(
        "--trl-loss",
        choices=("auto", "assistant", "completion"),
        default="auto",
        help="TRL loss masking: assistant_only_loss (marked template) or completion_only_loss; auto: assistant",
    )
    parser.add_argument("--data", type=Path, default=HH_RLHF, help="HH-RLHF JSONL file")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, default=None, help="write every figure and setting here")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.max_length < 8:
        parser.error("--steps and --batch-size must be >= 1 and --max-length >= 8")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := set(args.modes) - set(MODES):
        parser.error(f"unknown mode(s) {sorted(unknown)}; choose from {MODES}")
    args.peers = [] if args.peers.strip() in ("", "none") else [p.strip() for p in args.peers.split(",")]
    if unknown := set(args.peers) - set(PEERS):
        parser.error(f"unknown peer(s) {sorted(unknown)}; choose from {PEERS}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        child_main(args.child)
        return
    require_data(args.data)
    if "trl" in args.peers and importlib.util.find_spec("trl") is None:
        print("TRL is not installed, so there is no peer run: pip install -e '.[bench]'", file=sys.stderr)
        args.peers.remove("trl")

    from tether.config import SFTConfig
    from tether.data.batching import BatchPlan
    from tether.models.embedded import DEFAULT_MODEL
    from tether.models.loading import resolve

    command = command_line()
    defaults = {name: field.default for name, field in SFTConfig.model_fields.items()}
    model_dir = resolve(DEFAULT_MODEL)  # converts the embedded GGUF once, outside every measured process
    machine = machine_info()
    shape = model_shape(model_dir, defaults["lora_r"])
    print(f"$ {command}")
    print(f"machine: {machine['cpu']}, {machine['usable_cores']} cores, torch threads {machine['torch_threads']}")

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tether-bench-sft-") as tmp:
        work = Path(tmp)
        data_path = work / "conversations.jsonl"
        data = prepare_data(args.data, args.steps * args.batch_size, args.max_length, data_path)
        plan = BatchPlan(tuple(data["lengths"]), args.batch_size, args.seed, defaults["group_by_length"])
        order = [i for batch in plan.batches(0) for i in batch]  # the batches `tether sft` will train, in order
        peak_before = matmul_peak()
        print(f"matmul fp32 2048^2: {peak_before['gflops_best']:.1f} GFLOP/s (best of {peak_before['repeats']})")
        for mode in args.modes:
            for engine in ["tether", *args.peers]:
                name = f"{engine}-{mode}"
                spec = {
                    "engine": engine,
                    "mode": mode,
                    "model": DEFAULT_MODEL,
                    "model_dir": model_dir,
                    "data": str(data_path),
                    "steps": args.steps,
                    "batch_size": args.batch_size,
                    "max_length": args.max_length,
                    "seed": args.seed,
                    "trl_loss": args.trl_loss,
                    "order": order,
                    "out": str(work / name),
                    "result": str(work / f"{name}.json"),
                    "lora": {
                        "r": defaults["lora_r"],
                        "alpha": defaults["lora_alpha"],
                        "dropout": defaults["lora_dropout"],
                        "target_modules": defaults["lora_target_modules"],
                    },
                    "train": {k: defaults[k] for k in ("lr", "scheduler", "weight_decay", "max_grad_norm")},
                }
                run = run_spec(__file__, work, name, spec)
                run.update(engine=engine, mode=mode)
                run["summary"] = summarize(run, shape, data["mean_sq_per_token"])
                runs.append(run)
                s = run["summary"]
                times = [x["time_s"] for x in run["steps"][1:]] or [run["steps"][0]["time_s"]]
                print(
                    f"  {_rate(s['tokens_per_s'])} tokens/s, measured steps {min(times):.2f}-{max(times):.2f} s, "
                    f"peak RSS {run['peak_rss_gib']:.2f} GiB, {run['wall_s']:.0f} s in all"
                )
        peak_after = matmul_peak()
    machine["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    peak = max(peak_before["gflops_best"], peak_after["gflops_best"])
    report = build_report(args, command, machine, shape, data, peak_before, peak_after, peak, runs)
    print()
    print(report["markdown"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({k: v for k, v in report.items() if k != "markdown"}, indent=2) + "\n")
        print(f"\nwrote {args.json}")


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def build_report(args, command, machine, shape, data, peak_before, peak_after, peak, runs) -> dict[str, Any]:
    by_key = {(r["engine"], r["mode"]): r for r in runs}
    rows, ratios, notes = [], {}, []
    for run in runs:
        s = run["summary"]
        peer = by_key.get(("trl", run["mode"])) if run["engine"] == "tether" else None
        ratio = None
        if peer is not None:
            p = peer["summary"]
            ratios[run["mode"]] = {
                "tokens_per_s": s["tokens_per_s"] / p["tokens_per_s"],
                "label_tokens_per_s": s["label_tokens_per_s"] / p["label_tokens_per_s"],
                "model_gflops_per_s": s["model_gflops_per_s"] / p["model_gflops_per_s"],
                "peak_rss": run["peak_rss_gib"] / peer["peak_rss_gib"],
            }
            ratio = f"{ratios[run['mode']]['tokens_per_s']:.2f}x"
            same_tokens = s["all_steps_tokens"] == p["all_steps_tokens"]
            same_labels = s["all_steps_label_tokens"] == p["all_steps_label_tokens"]
            per_step = [(x["tokens"], x["labels"]) for x in run["steps"]]
            same_steps = per_step == [(x["tokens"], x["labels"]) for x in peer["steps"]]
            notes.append(
                f"{run['mode']}: tether vs TRL over all steps: tokens {s['all_steps_tokens']} vs "
                f"{p['all_steps_tokens']} ({'equal' if same_tokens else 'DIFFER'}), label tokens "
                f"{s['all_steps_label_tokens']} vs {p['all_steps_label_tokens']} "
                f"({'equal' if same_labels else 'DIFFER'}); same batch at every step: "
                f"{'yes' if same_steps else 'NO'}; TRL loss: {peer['loss_mode']}"
            )
            if run["mode"] == "lora" and peer.get("trainable_params") != shape["N_lora"]:
                notes.append(f"lora: TRL trains {peer.get('trainable_params')} params, N_lora = {shape['N_lora']}")
        if not run.get("batch_stats"):
            notes.append(
                f"{run['engine']}-{run['mode']}: per-batch stats unavailable; the attention term uses the data "
                "set's mean length and executed FLOPs are not reported"
            )
        executed = s["executed_gflops_per_s"]
        rows.append(
            [
                run["mode"],
                run["engine"],
                _rate(s["tokens_per_s"]),
                _rate(s["label_tokens_per_s"]),
                f"{run['peak_rss_gib']:.2f}",
                f"{s['model_gflops_per_s']:.1f}",
                f"{100 * s['model_gflops_per_s'] / peak:.1f}%",
                None if executed is None else f"{executed:.1f}",
                None if executed is None else f"{100 * executed / peak:.1f}%",
                ratio,
            ]
        )
    headers = [
        "mode",
        "engine",
        "tokens/s",
        "label tokens/s",
        "peak RSS GiB",
        "model GFLOP/s",
        "MFU (% matmul peak)",
        "executed GFLOP/s",
        "HFU",
        "tokens/s vs TRL",
    ]
    lines = [
        "## SFT throughput: tether" + (" vs TRL SFTTrainer" if args.peers else ""),
        "",
        *machine_lines(command, machine, peak_before, peak_after, peak),
        f"Model: embedded smollm2-135m-instruct fp32; N = {shape['N_matmul']:,} matmul weights, "
        f"head V*d = {shape['H_head']:,} ({'tied to' if shape['tied_embeddings'] else 'apart from'} the "
        f"embedding), L = {shape['layers']}, d_attn = {shape['d_attn']}, N_lora = {shape['N_lora']:,} "
        f"(r = {shape['lora_r']}, all linear layers)",
        "",
        f"Data: {data['conversations']} HH-RLHF harmless-base test conversations (prompt + chosen), "
        f"{data['tokens']} tokens, {data['label_tokens']} label tokens, {data['truncated']} truncated at "
        f"{args.max_length}; {args.steps} steps of {args.batch_size}, step 1 excluded",
        "",
        markdown_table(headers, rows),
        "",
        "Model FLOPs: full 6N*T + 12*L*d_attn*sum(n^2) + 6*V*d*A; LoRA (4N + 6N_lora)*T + 12*L*d_attn*sum(n^2) "
        "+ 4*V*d*A (T tokens, A label tokens; see the script's docstring). Executed FLOPs add padding and the head "
        "over the positions each engine projects (TRL on CPU: every position), recomputed once in backward.",
    ]
    notes += trust_notes(machine, args.steps)
    lines += [f"- {n}" for n in notes]
    return {
        "command": command,
        "machine": machine,
        "settings": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "modes": args.modes,
            "peers": args.peers,
            "trl_loss": args.trl_loss,
            "seed": args.seed,
        },
        "matmul": {"before": peak_before, "after": peak_after, "peak_gflops": peak},
        "model": shape,
        "data": data,
        "runs": runs,
        "ratios_tether_over_trl": ratios,
        "markdown": "\n".join(lines),
    }


if __name__ == "__main__":
    main()
