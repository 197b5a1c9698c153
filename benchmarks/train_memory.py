"""Peak memory of every training command with its defaults, batch 8 and 1,024-token sequences.

Run (the recorded benchmark; about 70 minutes on 2 CPU cores)::

    .venv/bin/python benchmarks/train_memory.py --json runs/train_memory.json

Smoke test (tiny sequences, two commands)::

    .venv/bin/python benchmarks/train_memory.py --length 96 --commands sft,dpo

What runs
---------
Each case is one ``tether`` command in a fresh process on the embedded SmolLM2-135M-Instruct, with the
command's defaults (fp32, all weights trained, ``gradient_checkpointing: auto``, the default memory budget)
plus ``--batch-size 8`` (RL: the default ``--prompts-per-step 8``) and data written by this script whose
sequences reach ``--length`` tokens:

- sft, dpo, orpo, simpo, kto, rm train: 16 examples, 8 of them at least ``--length`` tokens after the chat
  template (a short prompt, a long answer; truncation keeps the first ``--length``) and 8 short ones, and
  ``--max-steps 2``. The seed (``--seed``) is chosen with tether's own batch plan so that the short batch is
  step 1 and the long one step 2: the long batch then runs with the AdamW state already allocated, as every
  step of a long run does, at half the compute of two long steps (``metrics.jsonl``'s tokens per step are
  printed to show it).
- ppo, rloo, grpo: ``--steps 1`` on 8 prompts of about ``--length`` tokens, ``--max-prompt-length`` =
  ``--length`` - 64 and the default 64 new tokens, rewarded by a Python function (response length). One RL
  step makes several optimizer steps (RLOO/GRPO: 32 samples in minibatches of 16; PPO: 2 epochs).
- the issue's case: ``tether rm train --lora --batch-size 8 --max-steps 20`` on the first 169 valid pairs of
  the shared HH-RLHF harmless-base file (``--data-format hh-rlhf --skip-invalid``), max length 1,024, fp32
  (skipped when the shared data is absent, or with ``--no-issue-case``).

Measured: ``ru_maxrss`` of the child alone (``os.wait4``), i.e. the peak resident memory of the whole
command (imports, data, model load, reference pass, rollouts, every step, checkpoint and final save).
Predicted: the peak the command's own pre-flight check printed (``memory: estimated peak X GB``), with the
gradient-checkpointing decision it took.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
from pathlib import Path

from common import REPO, SHARED_DATA, command_line, machine_info, markdown_table, run_child

WORDS_TEXT = (
    "the model answers questions about safety policy and explains why some requests are refused while others "
    "are helpful clear accurate detailed examples include cooking travel history science mathematics code music "
    "gardening weather health finance law sport language art film books animals plants stars oceans mountains"
)
WORDS = WORDS_TEXT.split(" ")
COMMANDS = ("sft", "dpo", "orpo", "simpo", "kto", "rm train", "ppo", "rloo", "grpo")
REWARD = '''def length_reward(prompts, responses):
    """Longer answers score higher (cheap and deterministic; only the memory is measured)."""
    return [min(len(r), 400) / 400 for r in responses]
'''


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_data(work: Path, length: int) -> dict[str, Path]:
    """Offline files: 8 long and 8 short examples of each kind; RL: 8 long prompts. Words ~ 1.1 tokens."""
    rng = random.Random(0)
    long_words, short_words = int(1.5 * length), 12
    chat, pairs, unpaired = [], [], []
    for i in range(16):
        n = long_words if i < 8 else short_words
        prompt = text(rng, 40 if i < 8 else 6)
        chat.append({"prompt": prompt, "completion": text(rng, n)})
        pairs.append({"prompt": prompt, "chosen": text(rng, n), "rejected": text(rng, n)})
        unpaired.append({"prompt": prompt, "completion": text(rng, n), "label": i % 2 == 0})
    prompts = [{"prompt": text(rng, long_words)} for _ in range(8)]
    (work / "reward.py").write_text(REWARD)
    return {
        "chat": write_jsonl(work / "chat.jsonl", chat),
        "pairs": write_jsonl(work / "pairs.jsonl", pairs),
        "unpaired": write_jsonl(work / "unpaired.jsonl", unpaired),
        "prompts": write_jsonl(work / "prompts.jsonl", prompts),
        "reward": work / "reward.py",
    }


def short_first_seed(lengths: list[int], batch_size: int) -> int:
    """The smallest seed whose first epoch runs the batch of short examples first (tether's batch plan)."""
    from tether.data.batching import BatchPlan

    for seed in range(1000):
        batches = BatchPlan(tuple(lengths), batch_size, seed, True).batches(0)
        if max(lengths[i] for i in batches[0]) < max(lengths):
            return seed
    raise SystemExit("no seed puts the short batch first")


def cases(args: argparse.Namespace, files: dict[str, Path], seed: int, work: Path) -> list[tuple[str, list[str]]]:
    offline = ["--batch-size", str(args.batch_size), "--max-steps", "2", "--max-length", str(args.length)]
    offline += ["--seed", str(seed)]
    data = {"sft": "chat", "kto": "unpaired"}
    out = []
    for command in COMMANDS:
        argv = [*command.split(), "--out", str(work / "runs" / command.replace(" ", "-"))]
        if command in ("ppo", "rloo", "grpo"):
            argv += ["--prompts", str(files["prompts"]), "--steps", "1"]
            argv += ["--max-prompt-length", str(args.length - 64), "--reward", f"py:{files['reward']}:length_reward"]
        else:
            argv += ["--data", str(files[data.get(command, "pairs")]), *offline]
        out.append((command, argv))
    hh = SHARED_DATA / "hh-rlhf" / "harmless-base-test.shared.jsonl"
    if args.issue_case and hh.is_file():
        argv = ["rm", "train", "--model", "smollm2-135m-instruct", "--data", str(hh), "--data-format", "hh-rlhf"]
        argv += ["--skip-invalid", "--limit", "169", "--lora", "--batch-size", "8", "--max-steps", "20"]
        out.append(("rm train (issue: HH-RLHF, LoRA)", [*argv, "--out", str(work / "runs" / "rm-issue")]))
    return [(name, argv) for name, argv in out if args.commands is None or name.split(" (")[0] in args.commands]


def run_case(name: str, argv: list[str], work: Path) -> dict:
    full = [sys.executable, "-m", "tether", *argv, "--no-progress", "--overwrite"]
    env = {"TETHER_REFERENCE_CACHE": str(work / "reference-cache"), "COLUMNS": "250"}
    print(f"running {name} ...", flush=True)
    child = run_child(full, work / f"{name.split(' (')[0].replace(' ', '-')}.log", env)
    log = child.log.read_text(errors="replace")
    predicted = re.search(r"memory: estimated peak ([\d.]+) GB", log)
    refused = re.search(r"error: estimated peak memory ([\d.]+) GB.*", log)
    out = Path(argv[argv.index("--out") + 1])
    config = (out / "config.yaml").read_text() if (out / "config.yaml").is_file() else ""
    checkpointing = re.search(r"^gradient_checkpointing: (\w+)", config, re.M)
    steps = []
    if (out / "metrics.jsonl").is_file():
        steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {
        "case": name,
        "command": "tether " + " ".join(argv),
        "returncode": child.returncode,
        "peak_gb": child.max_rss_bytes / 1e9,
        "predicted_gb": float((predicted or refused).group(1)) if (predicted or refused) else None,
        "refused": refused.group(0) if refused else None,
        "checkpointing": checkpointing.group(1) if checkpointing else None,
        "step_tokens": [s.get("tokens") for s in steps],
        "response_length": [s.get("response_length") for s in steps if "response_length" in s],
        "wall_s": child.wall_s,
        "tail": child.tail(8) if child.returncode else "",
    }


def predict(result: dict, work: Path) -> float | None:
    """The estimate the command's pre-flight gives now, with the checkpointing decision the run took: the
    command again with ``--memory-budget 0.001``, refused before loading anything."""
    argv = result["command"].split()[1:]
    forced = "--gradient-checkpointing" if result["checkpointing"] == "true" else "--no-gradient-checkpointing"
    log = work / "predict.log"
    run_child([sys.executable, "-m", "tether", *argv, forced, "--memory-budget", "0.001", "--no-progress"], log)
    found = re.search(r"error: estimated peak memory ([\d.]+) GB", log.read_text(errors="replace"))
    return float(found.group(1)) if found else None


def report(results: list[dict], machine: dict, command: str) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores, {machine['memory_gib']} GiB RAM, "
        f"torch threads {machine['torch_threads']}, load average {machine['load_avg_1m']} before; {versions}",
        "",
    ]
    rows = []
    for r in results:
        error = None
        if r["predicted_gb"] and not r["refused"]:
            error = f"{100 * (r['predicted_gb'] - r['peak_gb']) / r['peak_gb']:+.0f}%"
        outcome = "refused" if r["refused"] else ("ok" if r["returncode"] == 0 else f"exit {r['returncode']}")
        tokens = "/".join(str(t) for t in r["step_tokens"][:3]) + ("/..." if len(r["step_tokens"]) > 3 else "")
        rows.append(
            [
                r["case"],
                outcome,
                r["checkpointing"],
                f"{r['predicted_gb']:.2f}" if r["predicted_gb"] else None,
                f"{r['peak_gb']:.2f}",
                error,
                tokens or None,
                f"{r['wall_s'] / 60:.1f}",
            ]
        )
    headers = ["command", "outcome", "checkpointing", "predicted GB", "peak RSS GB", "error", "tokens/step", "min"]
    lines.append(markdown_table(headers, rows))
    lines.append("")
    lines.append("Command lines (each with `--no-progress --overwrite`):")
    lines.append("")
    lines += [f"- {r['case']}: `{r['command']}`" for r in results]
    for r in results:
        if r["tail"] or r["refused"]:
            lines += ["", f"{r['case']}: {r['refused'] or r['tail']}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=1024, help="tokens per long sequence")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--commands", type=lambda s: [c.strip() for c in s.split(",")], default=None)
    parser.add_argument("--no-issue-case", dest="issue_case", action="store_false")
    parser.add_argument("--work", type=Path, default=None, help="folder for data, runs and logs (default: temp)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--predict-only",
        type=Path,
        default=None,
        help="a --json file of an earlier run (same --work): recompute each command's predicted peak, keep the "
        "measured ones, print the table",
    )
    args = parser.parse_args()
    if args.predict_only:
        saved = json.loads(args.predict_only.read_text())
        work = args.work or Path(saved["results"][0]["command"].split("--out ")[1].split()[0]).parents[1]
        for result in saved["results"]:
            result["measured_predicted_gb"] = result["predicted_gb"]
            result["predicted_gb"] = predict(result, work)
        print(report(saved["results"], saved["machine"], saved["command"] + f"` then `{command_line()}"))
        return
    sys.path.insert(0, str(REPO / "src"))
    work = args.work or Path(tempfile.mkdtemp(prefix="train-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    files = write_data(work, args.length)
    lengths = [2 if i < 8 else 1 for i in range(16)]  # only the order matters: long before short
    seed = short_first_seed(lengths, args.batch_size)
    machine = machine_info()
    command = command_line()
    results = []
    for name, argv in cases(args, files, seed, work):
        results.append(run_case(name, argv, work))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "tail"}), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"machine": machine, "command": command, "results": results}, indent=1))
    print(report(results, machine, command))


if __name__ == "__main__":
    main()
