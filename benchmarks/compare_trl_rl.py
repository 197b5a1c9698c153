"""Online RL: `tether rloo` against TRL's RLOOTrainer on the same model, prompts and settings, in one run.

Run (the recorded benchmark: full fine-tuning and LoRA on both sides, four training runs of 5 RL steps,
about 8 minutes on 2 idle CPU cores; without ``--lora`` only the two full fine-tuning runs)::

    .venv/bin/python benchmarks/compare_trl_rl.py --lora --json runs/compare_trl_rl.json

Smoke test::

    .venv/bin/python benchmarks/compare_trl_rl.py --steps 2 --max-new-tokens 8

What runs
---------
One fresh Python process per engine trains the embedded SmolLM2-135M-Instruct (its converted fp32
checkpoint folder, the same path on both sides) with RLOO for ``--steps`` RL steps. Each step: take
``--prompts-per-step`` prompts, sample ``--samples-per-prompt`` (k) responses to each (``--max-new-tokens``,
temperature ``--temperature``, top-k and top-p off), score them with the reward below, compute the old
policy's and the reference's per-token log-probs in no-gradient passes, subtract ``beta`` times the
summed per-token k1 KL (log pi - log pi_ref) from each reward, form leave-one-out advantages, then one
epoch of clipped-ratio updates (eps 0.2) with a single minibatch of all k * prompts samples: one AdamW
step per RL step (lr ``--lr`` constant, weight decay 0.01, clipping at 1.0, fp32, no gradient
checkpointing). With full fine-tuning the reference is a second, frozen copy of the model on both sides;
with ``--lora`` (r 16, alpha 32, dropout 0, all linear layers) it is the policy with its adapters off.

=========  ==============================================================================================
engine     setup
=========  ==============================================================================================
tether     ``tether rloo`` (the CLI entry point, ``tether.cli.main``, run in the child process with the
           printed arguments; timers are wrapped around ``OnlineRL.sample`` and ``OnlineRL.score_tokens``)
trl        ``trl.RLOOTrainer`` with ``RLOOConfig``: ``per_device_train_batch_size`` = k * prompts per step,
           ``gradient_accumulation_steps`` 1, so ``steps_per_generation`` 1 (one generation batch per
           optimizer step), ``num_generations`` k, ``num_iterations`` 1, ``max_completion_length``,
           ``temperature``, ``top_k`` 0, ``top_p`` 1, ``beta``, ``epsilon`` 0.2, ``normalize_advantages``
           False, ``bf16`` False, ``gradient_checkpointing`` False, ``optim`` adamw_torch, constant lr,
           ``use_cpu``, ``save_strategy`` no, ``report_to`` none
=========  ==============================================================================================

Prompts: the first ``steps * prompts_per_step`` instructions of the shared Alpaca instruction set
(``instructions/harmless_train.json``), each a plain user message; both engines apply the tokenizer's chat
template (the script checks that tether's prompt token ids equal ``apply_chat_template``'s). tether takes
each step's prompts from a seeded permutation (``random.Random(seed).shuffle`` over the prompt indices);
the script rebuilds that order and gives TRL its dataset already in it with ``shuffle_dataset=False``, so
both engines see the same prompts at the same step (checked afterwards from each engine's own records:
tether's ``rollouts.jsonl``, the prompts TRL passed to the reward function).

Reward: one deterministic Python function, ``length_reward`` below, written to a file that both engines
load: ``-|len(response) - 200| / 200`` (characters of the decoded, stripped response). tether gets it as
``--reward py:FILE:length_reward``; TRL calls it through a thin adapter that passes the same strings (the
last user message and the stripped completion text). Its cost is negligible on both sides.

Measurements
------------
Responses are sampled independently by each engine (different random streams), so response lengths, and
with them the work per step, differ somewhat; the report gives each engine's response tokens next to its
rates, and a response-token rate.

- Step time. tether: its own per-step timers in ``metrics.jsonl``, ``rollout_s`` (prompts, sampling,
  reward, no-gradient log-prob passes, advantages) + ``update_s`` (forward, backward, clipping, optimizer
  step). TRL: a ``TrainerCallback`` from ``on_step_begin`` to ``on_step_end`` (generation, scoring, loss,
  backward, clipping, optimizer step, ``zero_grad``); rollout = the time inside
  ``_generate_and_score_completions``; update = step - rollout.
- Rollout split. generate = tether's ``sample`` (generation, decoding, reward) / TRL's ``_generate``
  (tokenizing, generation, decoding) plus ``_calculate_rewards``; score = rollout - generate (the
  no-gradient policy and reference passes and the advantages).
- Rates over steps 2..N (step 1 is warm-up and left out): samples/s = samples / (rollout + update);
  rollout samples/s = samples / rollout; update samples/s = samples / update; response tokens/s =
  generated tokens (up to and including EOS) / (rollout + update).
- Peak RSS: ``ru_maxrss`` of that child alone (``os.wait4``): imports, both models, all steps, and, for
  tether, the final checkpoint and model it always writes (TRL is asked to save nothing).
- Matmul peak: best of 10 fp32 2048 x 2048 matmuls before and after the runs, as a check that the machine
  was in the same state.

Differences that remain (the APIs allow no closer match)
-------------------------------------------------------
- What a step is. tether: one RL step is one rollout (prompts per step x k samples) followed by
  ``epochs_per_step`` passes of ``samples / minibatch_size`` optimizer steps; here exactly one. TRL: a step
  (``global_step``) is one optimizer step, and it generates every ``steps_per_generation * num_iterations``
  steps; here 1 * 1, so its steps are the same unit. Both log one record per step.
- Reference log-probs. Both compute them in every step, in a no-gradient pass over the whole rollout
  (one batch of k * prompts sequences on both sides), from a second frozen model copy with full
  fine-tuning (``reference_model_copy`` below) and from the policy with adapters disabled with LoRA. Both
  also recompute the old policy's log-probs in a no-gradient pass, although with one epoch they equal
  the update's (detached) log-probs.
- Policy ratio and loss aggregation. tether clips the per-token ratio and averages the clipped terms over
  all response tokens of the minibatch (PPO style). TRL's RLOOTrainer clips the per-sequence ratio
  exp(sum of log-ratios) and averages over sequences. Same KL placement (in the reward, k1 summed per
  response, coefficient beta) and the same leave-one-out baseline; the compute is the same.
- LM head positions. tether projects only the response positions through the 49k-token LM head (in chunks
  recomputed in backward). TRL's fused head scores only the labelled positions on Triton devices but every
  position (prompt, response and padding) on CPU.
- Entropy. tether computes the policy's entropy in the no-gradient scoring pass, TRL in the gradient pass.
- Output. tether always writes a checkpoint (weights, optimizer), the final model, metrics, rollouts and
  an HTML report at the end (outside the step timers); TRL here writes nothing.
- Sampling. tether sorts a generation batch's prompts by length (all k * prompts samples fit one batch
  of ``--rollout-batch-size``); TRL generates them in dataset order. Both left-pad and use a KV cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
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

INSTRUCTIONS = SHARED_DATA / "instructions" / "harmless_train.json"
REWARD_SOURCE = '''"""The benchmark's reward: prefer responses of about 200 characters (deterministic, cheap)."""


def length_reward(prompts, responses):
    return [-abs(len(response) - 200) / 200 for response in responses]
'''
BUSY_PATTERN = "tether |pytest|benchmarks/"
"""Processes that would compete for the 2 cores (checked with pgrep before and after the runs)."""


@dataclasses.dataclass(frozen=True)
class Engine:
    name: str
    peer: str  # "tether" or "trl"
    mode: str  # "full" or "lora"


def engines_for(modes: list[str]) -> list[Engine]:
    out = []
    for mode in modes:
        suffix = "" if mode == "full" else f"-{mode}"
        out += [Engine(f"tether{suffix}", "tether", mode), Engine(f"trl{suffix}", "trl", mode)]
    return out


# -- data --------------------------------------------------------------------------------------------------
def prepare_prompts(path: Path, count: int, model_dir: str, out: Path) -> dict[str, Any]:
    """Write the first ``count`` instructions as ``{"prompt": text}`` rows; count their template tokens."""
    if not path.is_file():
        sys.exit(
            f"benchmark data not found: {path}\n"
            "This benchmark reads the shared Alpaca instructions (../shared/data beside the checkout, see its "
            "README); pass --data PATH to a JSON list of {'instruction': ...} rows."
        )
    from transformers import AutoTokenizer

    from tether.data.tokenization import ChatEncoder
    from tether.generation.engine import chat_prompt_ids
    from tether.models.loading import load_tokenizer

    rows = json.loads(path.read_text())
    texts = [row["instruction"] for row in rows if row.get("instruction", "").strip()][:count]
    if len(texts) < count:
        sys.exit(f"{path} has only {len(texts)} instructions; {count} needed (steps * prompts per step)")
    out.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    hf = AutoTokenizer.from_pretrained(model_dir)
    encoder = ChatEncoder(load_tokenizer(model_dir))
    lengths, same = [], True
    for text in texts:
        messages = [{"role": "user", "content": text}]
        reference = list(
            hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        )
        same = same and chat_prompt_ids(encoder, text) == reference
        lengths.append(len(reference))
    return {
        "source": str(path),
        "prompts": texts,
        "prompt_tokens": lengths,
        "same_prompt_ids": same,
    }


def tether_order(count: int, seed: int) -> list[int]:
    """The order in which `tether rloo` takes ``count`` prompts over ``count`` prompts' worth of steps.

    Mirrors ``OnlineRL.step_prompts`` for one pass: position p of the run is ``order[p]`` with ``order`` a
    ``random.Random(seed + 0)`` shuffle of the indices. Checked after the runs against tether's own
    ``rollouts.jsonl``.
    """
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return order


# -- children: one process per engine ------------------------------------------------------------------------
def child_main(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    engine = Engine(**spec["engine"])
    write_child_result(spec, run_tether(spec, engine) if engine.peer == "tether" else run_trl(spec, engine))


def tether_argv(spec: dict[str, Any], engine: Engine) -> list[str]:
    s = spec["settings"]
    samples = s["prompts_per_step"] * s["samples_per_prompt"]
    argv = [
        "rloo",
        "--model", spec["model_dir"],
        "--dtype", "float32",
        "--prompts", spec["prompts"],
        "--reward", f"py:{spec['reward_file']}:length_reward",
        "--steps", str(s["steps"]),
        "--prompts-per-step", str(s["prompts_per_step"]),
        "--samples-per-prompt", str(s["samples_per_prompt"]),
        "--max-new-tokens", str(s["max_new_tokens"]),
        "--temperature", str(s["temperature"]),
        "--rollout-batch-size", str(samples),
        "--epochs-per-step", "1",
        "--minibatch-size", str(samples),
        "--clip", "0.2",
        "--kl-coef", str(s["beta"]),
        "--kl-estimator", "k1",
        "--no-whiten-advantages",
        "--lr", str(s["lr"]),
        "--max-grad-norm", "1.0",
        "--seed", str(s["seed"]),
        "--out", spec["out"],
        "--no-progress",
        "--overwrite",
    ]  # fmt: skip
    if engine.mode == "lora":
        argv += ["--lora", "--lora-r", "16", "--lora-alpha", "32", "--lora-dropout", "0.0"]
        argv += ["--lora-target-modules", "all-linear"]
    return argv


def run_tether(spec: dict[str, Any], engine: Engine) -> dict[str, Any]:
    import tether.cli
    import tether.train.rl.trainer as rl

    samples: list[dict[str, Any]] = []
    scoring: list[float] = []
    setup: dict[str, Any] = {}
    original_sample, original_score = rl.OnlineRL.sample, rl.OnlineRL.score_tokens

    def timed_sample(self, prompts, count, seed):
        started = time.perf_counter()
        rollout, expanded = original_sample(self, prompts, count, seed)
        elapsed = time.perf_counter() - started
        eos = self.tokenizer.eos_token_id
        samples.append(
            {
                "generate_s": elapsed,
                "prompts": [p.text for p in expanded],
                "prompt_tokens": sum(len(p) for p in rollout.prompt_ids),
                "lengths": [len(r) for r in rollout.response_ids],
                "truncated": sum(1 for r in rollout.response_ids if not r or r[-1] != eos),
                "rewards": [float(x) for x in rollout.scores],
            }
        )
        if not setup:
            policy = self.unwrapped_policy
            setup.update(
                dtype=str(next(policy.parameters()).dtype),
                attn_implementation=getattr(policy.config, "_attn_implementation", None),
                reference_model_copy=self.reference is not None,
                trainable_params=sum(p.numel() for p in policy.parameters() if p.requires_grad),
            )
        return rollout, expanded

    def timed_score(self, rollout, *, with_values):
        started = time.perf_counter()
        original_score(self, rollout, with_values=with_values)
        scoring.append(time.perf_counter() - started)

    rl.OnlineRL.sample, rl.OnlineRL.score_tokens = timed_sample, timed_score
    argv = tether_argv(spec, engine)
    try:
        tether.cli.main(argv)
    except SystemExit as done:
        if done.code not in (0, None):
            raise
    out = Path(spec["out"])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    metrics = [m for m in metrics if "rollout_s" in m]
    if not (len(metrics) == len(samples) == len(scoring)):
        raise SystemExit(f"tether logged {len(metrics)} steps, {len(samples)} samplings, {len(scoring)} scorings")
    logged_prompts: dict[int, list[str]] = {}
    for line in (out / "rollouts.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            logged_prompts.setdefault(row["step"], []).append(row["prompt"])
    steps = []
    for k, (m, sample, score_s) in enumerate(zip(metrics, samples, scoring, strict=True)):
        if logged_prompts.get(k) != sample["prompts"]:
            raise SystemExit(f"step {k + 1}: rollouts.jsonl prompts differ from the sampled ones")
        steps.append(
            {
                **sample,
                "time_s": m["rollout_s"] + m["update_s"],
                "rollout_s": m["rollout_s"],
                "update_s": m["update_s"],
                "score_s": m["rollout_s"] - sample["generate_s"],
                "scoring_pass_s": score_s,
                "engine_samples_per_s": m["samples_per_s"],
                "reward": m["reward"],
                "grad_norm": m.get("grad_norm"),
            }
        )
    return {"steps": steps, "setup": setup, "command": "tether " + shlex.join(argv)}


def run_trl(spec: dict[str, Any], engine: Engine) -> dict[str, Any]:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer

    s = spec["settings"]
    texts = [json.loads(line)["prompt"] for line in Path(spec["prompts"]).read_text().splitlines() if line.strip()]
    ordered = [texts[i] for i in spec["order"]]  # tether's step order, read sequentially
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": t}]} for t in ordered])
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    reward_spec = importlib.util.spec_from_file_location("bench_reward", spec["reward_file"])
    reward_module = importlib.util.module_from_spec(reward_spec)
    reward_spec.loader.exec_module(reward_module)

    calls: list[dict[str, Any]] = []

    def length_reward(prompts, completions, **kwargs):
        # The strings tether's py: reward receives: the last user message and the stripped response text.
        users = [p[-1]["content"] for p in prompts]
        responses = [c[-1]["content"].strip() for c in completions]
        values = reward_module.length_reward(users, responses)
        calls.append({"prompts": users, "rewards": [float(v) for v in values]})
        return values

    samples = s["prompts_per_step"] * s["samples_per_prompt"]
    kwargs: dict[str, Any] = {
        "output_dir": spec["out"],
        "max_steps": s["steps"],
        "per_device_train_batch_size": samples,
        "gradient_accumulation_steps": 1,
        "num_generations": s["samples_per_prompt"],
        "num_iterations": 1,
        "max_completion_length": s["max_new_tokens"],
        "temperature": s["temperature"],
        "top_k": 0,
        "top_p": 1.0,
        "beta": s["beta"],
        "epsilon": 0.2,
        "normalize_advantages": False,
        "shuffle_dataset": False,
        "learning_rate": s["lr"],
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.01,  # torch.optim.AdamW's default, which tether uses
        "max_grad_norm": 1.0,
        "optim": "adamw_torch",
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
        "model_init_kwargs": {"dtype": "float32"},
        "seed": s["seed"],
        "data_seed": s["seed"],
        "use_cpu": not torch.cuda.is_available(),
        "logging_strategy": "steps",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
    }
    args = trl.RLOOConfig(**kwargs)
    peft_config = None
    if engine.mode == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        )

    recorder = step_timer("reward")
    trainer = trl.RLOOTrainer(
        model=spec["model_dir"],
        reward_funcs=length_reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[recorder],
        peft_config=peft_config,
    )
    rollouts: list[float] = []
    generations: list[dict[str, Any]] = []
    rewards_s: list[float] = []
    inner_rollout, inner_generate, inner_rewards = (
        trainer._generate_and_score_completions,
        trainer._generate,
        trainer._calculate_rewards,
    )
    eos_and_pad = {*trainer.eos_token_ids, tokenizer.pad_token_id}

    def timed_rollout(inputs):
        started = time.perf_counter()
        out = inner_rollout(inputs)
        rollouts.append(time.perf_counter() - started)
        return out

    def timed_generate(prompts):
        started = time.perf_counter()
        prompt_ids, completion_ids, completions = inner_generate(prompts)
        generations.append(
            {
                "generate_s": time.perf_counter() - started,
                "prompt_tokens": sum(len(p) for p in prompt_ids),
                "lengths": [len(c) for c in completion_ids],
                "truncated": sum(1 for c in completion_ids if not c or c[-1] not in eos_and_pad),
            }
        )
        return prompt_ids, completion_ids, completions

    def timed_rewards(*a, **k):
        started = time.perf_counter()
        out = inner_rewards(*a, **k)
        rewards_s.append(time.perf_counter() - started)
        return out

    trainer._generate_and_score_completions = timed_rollout
    trainer._generate = timed_generate
    trainer._calculate_rewards = timed_rewards
    model = trainer.model
    setup = {
        "dtype": str(next(model.parameters()).dtype),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "bf16": args.bf16,
        "gradient_checkpointing": args.gradient_checkpointing,
        "optim": str(args.optim.value if hasattr(args.optim, "value") else args.optim),
        "reference_model_copy": trainer.ref_model is not None,
        "generation_batch_size": args.generation_batch_size,
        "steps_per_generation": args.steps_per_generation,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    trainer.train()
    n = len(recorder.times)
    if not (len(rollouts) == len(generations) == len(calls) == len(rewards_s) == n):
        raise SystemExit(
            f"TRL recorded {n} step times, {len(rollouts)} rollouts, {len(generations)} generations, "
            f"{len(calls)} reward calls"
        )
    steps = []
    for k in range(n):
        generate_s = generations[k]["generate_s"] + rewards_s[k]
        log = recorder.logs[k] if k < len(recorder.logs) else {}
        steps.append(
            {
                **generations[k],
                "generate_s": generate_s,
                "reward_s": rewards_s[k],
                "prompts": calls[k]["prompts"],
                "rewards": calls[k]["rewards"],
                "time_s": recorder.times[k],
                "rollout_s": rollouts[k],
                "update_s": recorder.times[k] - rollouts[k],
                "score_s": rollouts[k] - generate_s,
                "reward": log.get("reward"),
                "grad_norm": log.get("grad_norm"),
                "trl_step_time": log.get("step_time"),
            }
        )
    return {"steps": steps, "setup": setup, "trl_version": trl.__version__, "trl_config": _jsonable(kwargs)}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# -- parent ------------------------------------------------------------------------------------------------
def summarize(run: dict[str, Any], samples_per_step: int) -> dict[str, Any]:
    steps = run["steps"]
    measured = steps[1:] if len(steps) > 1 else steps
    total = sum(s["time_s"] for s in measured)
    rollout = sum(s["rollout_s"] for s in measured)
    update = sum(s["update_s"] for s in measured)
    samples = samples_per_step * len(measured)
    tokens = sum(sum(s["lengths"]) for s in measured)
    return {
        "measured_steps": len(measured),
        "samples": samples,
        "seconds": total,
        "samples_per_s": samples / total,
        "rollout_samples_per_s": samples / rollout,
        "update_samples_per_s": samples / update,
        "response_tokens": tokens,
        "response_tokens_per_s": tokens / total,
        "mean_response_tokens": tokens / samples,
        "truncated_share": sum(s["truncated"] for s in measured) / samples,
        "generate_s_per_step": sum(s["generate_s"] for s in measured) / len(measured),
        "score_s_per_step": sum(s["score_s"] for s in measured) / len(measured),
        "update_s_per_step": update / len(measured),
        "step_s": [s["time_s"] for s in steps],
    }


def busy_processes() -> list[str]:
    """Other processes matching BUSY_PATTERN (this benchmark and its children excluded)."""
    try:
        found = subprocess.run(["pgrep", "-af", BUSY_PATTERN], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    mine = {os.getpid(), os.getppid()}
    rows = []
    for line in found.splitlines():
        pid, _, cmd = line.partition(" ")
        if pid.isdigit() and int(pid) not in mine and "compare_trl_rl.py" not in cmd and "pgrep" not in cmd:
            rows.append(line)
    return rows


class BusyWatch:
    """Polls :func:`busy_processes` every ``interval`` seconds in a thread while the runs go on."""

    def __init__(self, interval: float = 15.0) -> None:
        import threading

        self.seen: dict[str, None] = {}
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.is_set():
            self.seen.update(dict.fromkeys(busy_processes()))
            self.stop.wait(self.interval)

    def __enter__(self) -> BusyWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.seen.update(dict.fromkeys(busy_processes()))


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="RL steps per run; step 1 is warm-up and left out")
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--samples-per-prompt", type=int, default=4, help="k (RLOO group size)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-6, help="constant learning rate")
    parser.add_argument("--beta", type=float, default=0.05, help="KL coefficient (k1, in the reward)")
    parser.add_argument("--lora", action="store_true", help="also run both engines with LoRA (r 16, all linear)")
    parser.add_argument("--engines", default="tether,trl", help="peers to run: tether, trl or both")
    parser.add_argument("--data", type=Path, default=INSTRUCTIONS, help="JSON list of {'instruction'} rows")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, default=None, help="write every figure and setting here")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.prompts_per_step < 1 or args.max_new_tokens < 1:
        parser.error("--steps, --prompts-per-step and --max-new-tokens must be >= 1")
    if args.samples_per_prompt < 2:
        parser.error("--samples-per-prompt must be >= 2 (RLOO's leave-one-out baseline)")
    args.peers = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not args.peers or set(args.peers) - {"tether", "trl"}:
        parser.error("--engines: a comma-separated subset of tether,trl")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        child_main(args.child)
        return
    if "trl" in args.peers and importlib.util.find_spec("trl") is None:
        sys.exit("TRL is not installed: pip install -e '.[bench]', or run with --engines tether")

    from tether.models.embedded import DEFAULT_MODEL, ensure_converted

    command = command_line()
    model_dir = str(ensure_converted(DEFAULT_MODEL))  # converted once, outside every measured process
    machine = machine_info()
    settings = {
        "steps": args.steps,
        "prompts_per_step": args.prompts_per_step,
        "samples_per_prompt": args.samples_per_prompt,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "lr": args.lr,
        "beta": args.beta,
        "seed": args.seed,
        "modes": ["full", "lora"] if args.lora else ["full"],
    }
    engines = [e for e in engines_for(settings["modes"]) if e.peer in args.peers]
    samples_per_step = args.prompts_per_step * args.samples_per_prompt
    busy_before = busy_processes()
    print(f"$ {command}")
    print(f"machine: {machine['cpu']}, {machine['usable_cores']} cores, torch threads {machine['torch_threads']}")
    if busy_before:
        print("other processes competing for the CPU:\n  " + "\n  ".join(busy_before))

    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    with BusyWatch() as watch, tempfile.TemporaryDirectory(prefix="tether-bench-rl-") as tmp:
        work = Path(tmp)
        count = args.steps * args.prompts_per_step
        data = prepare_prompts(args.data, count, model_dir, work / "prompts.jsonl")
        order = tether_order(count, args.seed)
        reward_file = work / "bench_reward.py"
        reward_file.write_text(REWARD_SOURCE)
        peak_before = matmul_peak()
        print(f"matmul 2048^2: fp32 {peak_before['gflops_best']:.1f} GFLOP/s")
        for engine in engines:
            spec = {
                "engine": dataclasses.asdict(engine),
                "model_dir": model_dir,
                "prompts": str(work / "prompts.jsonl"),
                "reward_file": str(reward_file),
                "order": order,
                "settings": settings,
                "out": str(work / engine.name),
                "result": str(work / f"{engine.name}.json"),
            }
            run = run_spec(__file__, work, engine.name, spec)
            run.update(dataclasses.asdict(engine), engine=engine.name)
            run["summary"] = summarize(run, samples_per_step)
            runs.append(run)
            s = run["summary"]
            times = s["step_s"][1:] or s["step_s"]
            print(
                f"  {_rate(s['samples_per_s'])} samples/s, measured steps {min(times):.1f}-{max(times):.1f} s, "
                f"peak RSS {run['peak_rss_gib']:.2f} GiB, {run['wall_s']:.0f} s in all"
            )
            if "command" in run:
                print(f"  same run from the CLI: {run['command']}")
        peak_after = matmul_peak()
    machine["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    busy_during = list(watch.seen)
    peak = max(peak_before["gflops_best"], peak_after["gflops_best"])
    busy = list(dict.fromkeys(busy_before + busy_during))
    report = build_report(args, command, machine, data, settings, peak_before, peak_after, peak, runs, busy)
    report["busy_before"], report["busy_during"] = busy_before, busy_during
    report["wall_s"] = time.perf_counter() - started
    print()
    print(report["markdown"])
    print(f"\nwall time of the benchmark: {report['wall_s']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({k: v for k, v in report.items() if k != "markdown"}, indent=2) + "\n")
        print(f"wrote {args.json}")


def build_report(args, command, machine, data, settings, peak_before, peak_after, peak, runs, busy) -> dict[str, Any]:
    samples_per_step = args.prompts_per_step * args.samples_per_prompt
    rows, ratio_rows, detail, notes = [], [], [], []
    for run in runs:
        s = run["summary"]
        rows.append(
            [
                run["mode"],
                run["engine"],
                _rate(s["samples_per_s"]),
                _rate(s["rollout_samples_per_s"]),
                _rate(s["update_samples_per_s"]),
                f"{s['generate_s_per_step']:.2f}",
                f"{s['score_s_per_step']:.2f}",
                f"{s['update_s_per_step']:.2f}",
                f"{s['mean_response_tokens']:.1f}",
                f"{100 * s['truncated_share']:.0f}%",
                _rate(s["response_tokens_per_s"]),
                f"{run['peak_rss_gib']:.2f}",
            ]
        )
        for k, step in enumerate(run["steps"], start=1):
            detail.append(
                [
                    run["mode"],
                    k if k > 1 else "1 (warm-up)",
                    run["engine"],
                    sum(step["lengths"]),
                    max(step["lengths"]),
                    step["truncated"],
                    f"{step['generate_s']:.2f}",
                    f"{step['score_s']:.2f}",
                    f"{step['update_s']:.2f}",
                    f"{step['time_s']:.2f}",
                    None if step.get("reward") is None else f"{step['reward']:.3f}",
                ]
            )
    for mode in settings["modes"]:
        pair = {r["peer"]: r for r in runs if r["mode"] == mode}
        if set(pair) != {"tether", "trl"}:
            continue
        t, p = pair["tether"]["summary"], pair["trl"]["summary"]
        ratio_rows.append(
            [
                mode,
                f"{t['samples_per_s'] / p['samples_per_s']:.2f}x",
                f"{t['rollout_samples_per_s'] / p['rollout_samples_per_s']:.2f}x",
                f"{t['update_samples_per_s'] / p['update_samples_per_s']:.2f}x",
                f"{t['response_tokens_per_s'] / p['response_tokens_per_s']:.2f}x",
                f"{pair['tether']['peak_rss_gib'] / pair['trl']['peak_rss_gib']:.2f}x",
            ]
        )
        same = [
            sorted(a["prompts"]) == sorted(b["prompts"])
            for a, b in zip(pair["tether"]["steps"], pair["trl"]["steps"], strict=False)
        ]
        prompt_tokens = [
            a["prompt_tokens"] == b["prompt_tokens"]
            for a, b in zip(pair["tether"]["steps"], pair["trl"]["steps"], strict=False)
        ]
        notes.append(
            f"{mode}: same prompts at every step: {'yes' if all(same) else 'NO ' + str(same)}; same prompt token "
            f"count at every step: {'yes' if all(prompt_tokens) else 'NO'}; response tokens over steps 2..N "
            f"{t['response_tokens']} (tether) vs {p['response_tokens']} (TRL)"
        )
    detail.sort(key=lambda row: (settings["modes"].index(row[0]), int(str(row[1]).split()[0])))
    for run in runs:
        setup = run["setup"]
        if run["peer"] == "tether":
            notes.append(
                f"{run['engine']}: weights {setup.get('dtype')}, {setup.get('attn_implementation')} attention, "
                f"reference copy {setup.get('reference_model_copy')}, trainable parameters "
                f"{setup.get('trainable_params', 0):,}; its command (paths in the benchmark's temporary folder; "
                f"bench_reward.py holds `length_reward`): `{run['command']}`"
            )
        else:
            reward_max = max(s["reward_s"] for s in run["steps"])
            notes.append(
                f"{run['engine']}: TRL {run['trl_version']}, weights {setup['dtype']}, {setup['attn_implementation']} "
                f"attention, bf16 {setup['bf16']}, gradient checkpointing {setup['gradient_checkpointing']}, optim "
                f"{setup['optim']}, reference copy {setup['reference_model_copy']}, generation batch "
                f"{setup['generation_batch_size']} (steps_per_generation {setup['steps_per_generation']}), trainable "
                f"parameters {setup['trainable_params']:,}; reward call at most {1000 * reward_max:.1f} ms per step"
            )
    if not data["same_prompt_ids"]:
        notes.append("WARNING: tether's chat-templated prompt ids differ from apply_chat_template's")
    if busy:
        notes.append(
            "WARNING: other tether/pytest/benchmark processes ran during the measurement (pgrep every 15 s); rates "
            "and ratios are not trustworthy: " + "; ".join(f"`{line[:160]}`" for line in busy)
        )
    else:
        notes.append("no other tether, pytest or benchmark process ran during the measurement (pgrep every 15 s)")
    notes += trust_notes(machine, args.steps)
    tokens = data["prompt_tokens"]
    lines = [
        "## Online RL: tether rloo vs TRL RLOOTrainer",
        "",
        *machine_lines(command, machine, peak_before, peak_after, peak),
        f"Model: embedded smollm2-135m-instruct (converted checkpoint folder), fp32, "
        f"{'full fine-tuning' if settings['modes'] == ['full'] else ' and '.join(settings['modes'])}",
        "",
        f"Prompts: the first {len(tokens)} Alpaca instructions of {Path(data['source']).name} as user messages, "
        f"{min(tokens)}-{max(tokens)} tokens with the chat template (prompt ids identical on both sides: "
        f"{'yes' if data['same_prompt_ids'] else 'NO'}); {args.steps} steps of {args.prompts_per_step} prompts x "
        f"{args.samples_per_prompt} samples = {samples_per_step} samples per step, step 1 excluded from rates",
        "",
        f"RLOO: k {args.samples_per_prompt}, max new tokens {args.max_new_tokens}, temperature {args.temperature:g}, "
        f"top-k/top-p off, beta {args.beta:g} (k1 KL summed per response, in the reward), clip 0.2, 1 epoch, 1 "
        f"minibatch of {samples_per_step} (one AdamW step per RL step), lr {args.lr:g} constant, weight decay 0.01, "
        "grad clip 1.0; reward -|len(response) - 200| / 200 (characters)",
        "",
        markdown_table(
            [
                "mode",
                "engine",
                "samples/s",
                "rollout samples/s",
                "update samples/s",
                "generate s/step",
                "score s/step",
                "update s/step",
                "response tokens/sample",
                "truncated",
                "response tokens/s",
                "peak RSS GiB",
            ],
            rows,
        ),
        "",
    ]
    if ratio_rows:
        lines += [
            "tether / TRL:",
            "",
            markdown_table(
                ["mode", "samples/s", "rollout samples/s", "update samples/s", "response tokens/s", "peak RSS"],
                ratio_rows,
            ),
            "",
        ]
    lines += [
        "Per step (generate: sampling, decoding and reward; score: no-gradient policy and reference passes and "
        "advantages; update: forward, backward, clipping, optimizer step):",
        "",
        markdown_table(
            [
                "mode",
                "step",
                "engine",
                "response tokens",
                "longest",
                "truncated",
                "generate s",
                "score s",
                "update s",
                "step s",
                "mean reward",
            ],
            detail,
        ),
        "",
    ]
    lines += [f"- {n}" for n in notes]
    return {
        "command": command,
        "machine": machine,
        "settings": settings,
        "matmul": {"before": peak_before, "after": peak_after, "peak_gflops": peak},
        "data": data,
        "runs": runs,
        "markdown": "\n".join(lines),
    }


if __name__ == "__main__":
    main()
