"""Every `tether interp` and `tether sae` command on the embedded SmolLM2-135M-Instruct, from the CLI, timed.

Run (about 15 minutes on 2 idle CPU cores; a step whose output exists is reused, ``--fresh`` redoes all)::

    .venv/bin/python benchmarks/interp_embedded.py --json interp_embedded.json

Each step is a child process ``tether ...`` with its log in ``WORK/logs/STEP.log``; wall time and peak RSS
come from ``os.wait4`` (the child alone). The data are the instruction sets of ../shared/data/instructions
(``--data``). What each step runs:

- ``capture``: ``resid_post.15`` of 2,048 harmless training instructions in the chat template, every token
  but the first (``--skip-first 1``: the attention sink, whose norm is about 100 times the others'), to
  safetensors chunks (the SAE's training data); ``capture-val``: 128 harmless validation instructions, the
  same way (the SAE's held-out data). Throughput: tokens per second of the capture loop (its summary.json).
- ``lens``: the logit lens on 4 harmful validation instructions.
- ``patch``: activation patching, clean "The Eiffel Tower is in the city of" -> " Paris" against
  "The Colosseum is in the city of" -> " Rome" (both 9 tokens), resid_pre/attn_out/mlp_out.
- ``probe``: logistic-regression and difference-of-means probes per layer, all 260 harmful and 260 harmless
  training instructions, all 39 harmful and 512 harmless validation ones. Throughput: prompts per second
  of the whole command (feature extraction dominates).
- ``refusal-direction``: Arditi et al. 2024 with 64 training instructions of each kind, 8 of each for
  selection and the other 31 harmful (and 31 harmless) validation instructions for evaluation, 4
  post-instruction positions, every third layer, 40-token answers judged by the default refusal judge.
- ``steer-direction``: activation addition of that direction on 32 harmless validation instructions at
  strengths 0, 0.5, 1, 1.5 (the refusal rate and the loss on the unsteered answers).
- ``sae-train``: a TopK SAE (k 32, 8 x 576 latents) on the captured tokens, 393,216 training tokens
  (about 4 passes); ``sae-eval``: L0, explained variance, dead latents on the held-out capture, and the
  CE loss recovered on 32 harmless validation instructions (spliced after the first position, as
  captured); ``sae-cards``: top-activating examples of 16 latents; ``steer-feature``: clamping the first
  carded latent's decoder row on 16 harmful validation instructions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
SITE = "resid_post.15"


def steps(work: Path, data: Path) -> list[tuple[str, list[str], Path]]:
    """(name, tether arguments, the output file that marks the step done), in the order they run."""
    d = {
        name: str(data / f"{name}.json") for name in ("harmful_train", "harmless_train", "harmful_val", "harmless_val")
    }
    m = ["--model", MODEL]
    sets = ["--harmful-train", d["harmful_train"], "--harmless-train", d["harmless_train"]]
    sets += ["--harmful-val", d["harmful_val"], "--harmless-val", d["harmless_val"]]
    capture = ["interp", "capture", *m, "--chat", "--sites", SITE, "--positions", "all", "--skip-first", "1"]
    return [
        (
            "capture",
            [*capture, "--data", d["harmless_train"], "--limit", "2048", "--out", str(work / "capture")],
            work / "capture" / "summary.json",
        ),
        (
            "capture-val",
            [*capture, "--data", d["harmless_val"], "--limit", "128", "--out", str(work / "capture-val")],
            work / "capture-val" / "summary.json",
        ),
        (
            "lens",
            ["interp", "lens", *m, "--data", d["harmful_val"], "--limit", "4", "--chat", "--out", str(work / "lens")],
            work / "lens" / "lens.json",
        ),
        (
            "patch",
            [
                "interp",
                "patch",
                *m,
                "--clean",
                "The Eiffel Tower is in the city of",
                "--corrupted",
                "The Colosseum is in the city of",
                "--answer",
                " Paris",
                "--wrong-answer",
                " Rome",
                "--out",
                str(work / "patch"),
            ],
            work / "patch" / "patching.json",
        ),
        (
            "probe",
            [
                "interp",
                "probe",
                *m,
                *sets,
                "--harmless-train-limit",
                "260",
                "--harmless-val-limit",
                "512",
                "--out",
                str(work / "probe"),
            ],
            work / "probe" / "probes.json",
        ),
        (
            "refusal-direction",
            [
                "interp",
                "refusal-direction",
                *m,
                *sets,
                "--train-limit",
                "64",
                "--selection-limit",
                "8",
                "--eval-limit",
                "31",
                "--positions",
                "4",
                "--layer-stride",
                "3",
                "--max-new-tokens",
                "40",
                "--out",
                str(work / "refusal-direction"),
            ],
            work / "refusal-direction" / "results.json",
        ),
        (
            "steer-direction",
            [
                "interp",
                "steer",
                *m,
                "--direction",
                str(work / "refusal-direction" / "direction.safetensors"),
                "--prompts",
                d["harmless_val"],
                "--prompts-limit",
                "32",
                "--loss-limit",
                "32",
                *[a for s in ("0", "0.5", "1", "1.5") for a in ("--strengths", s)],
                "--max-new-tokens",
                "40",
                "--out",
                str(work / "steer-direction"),
            ],
            work / "steer-direction" / "sweep.json",
        ),
        (
            "sae-train",
            [
                "sae",
                "train",
                "--activations",
                str(work / "capture" / "activations"),
                "--architecture",
                "topk",
                "--k",
                "32",
                "--batch-size",
                "2048",
                "--tokens",
                "393216",
                "--out",
                str(work / "sae-run"),
            ],
            work / "sae-run" / "summary.json",
        ),
        (
            "sae-eval",
            [
                "sae",
                "eval",
                "--sae",
                str(work / "sae-run"),
                "--activations",
                str(work / "capture-val" / "activations"),
                "--data",
                d["harmless_val"],
                "--limit",
                "32",
                "--output",
                str(work / "sae-eval.json"),
            ],
            work / "sae-eval.json",
        ),
        (
            "sae-cards",
            [
                "sae",
                "cards",
                "--sae",
                str(work / "sae-run"),
                "--activations",
                str(work / "capture-val" / "activations"),
                "--count",
                "16",
                "--output",
                str(work / "cards" / "cards.html"),
            ],
            work / "cards" / "cards.json",
        ),
        ("steer-feature", [], work / "steer-feature" / "sweep.json"),  # arguments from the cards: feature_step
    ]


def feature_step(work: Path, data: Path) -> list[str]:
    """`tether interp steer` clamping the first latent shown in the feature cards."""
    cards = json.loads((work / "cards" / "cards.json").read_text())
    feature = cards["cards"][0]["feature"]
    return [
        "interp",
        "steer",
        "--model",
        MODEL,
        "--direction",
        str(work / "sae-run" / "sae"),
        "--feature",
        str(feature),
        "--site",
        SITE,
        "--mode",
        "clamp",
        *[a for s in ("0", "10", "20") for a in ("--strengths", s)],
        "--prompts",
        str(data / "harmful_val.json"),
        "--prompts-limit",
        "16",
        "--loss-prompts",
        str(data / "harmless_val.json"),
        "--loss-limit",
        "16",
        "--max-new-tokens",
        "40",
        "--out",
        str(work / "steer-feature"),
    ]


def run_step(name: str, args: list[str], log: Path, tether: str) -> dict[str, Any]:
    """Run ``tether ARGS`` with its output in ``log``; wall seconds and peak RSS (GiB) of the child alone."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    with log.open("w") as handle:
        child = subprocess.Popen([tether, *args], stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"step {name} failed with exit code {code}: tether {' '.join(args)} (log: {log})")
    return {
        "command": "tether " + " ".join(args),
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
    }


def figures(work: Path) -> dict[str, Any]:
    """The headline results of each step, read from its own output files."""
    read = lambda *parts: json.loads(work.joinpath(*parts).read_text())  # noqa: E731
    capture, lens, patch, probe = (
        read("capture", "summary.json"),
        read("lens", "lens.json"),
        read("patch", "patching.json"),
        read("probe", "probes.json"),
    )
    direction, steer, feature = (
        read("refusal-direction", "results.json"),
        read("steer-direction", "sweep.json"),
        read("steer-feature", "sweep.json"),
    )
    sae, sae_eval = read("sae-run", "summary.json"), read("sae-eval.json")
    best = probe["best"]
    row = next(r for r in probe["layers"] if r["layer"] == best["layer"] and r["probe"] == best["probe"])
    sweep = lambda s: [  # noqa: E731
        {
            "strength": p["strength"],
            "refusal": round(p["refusal"]["value"], 3),
            "n": p["refusal"]["n"],
            "loss": round(p["loss"], 4),
        }
        for p in s["strengths"].values()
    ]
    return {
        "capture": {k: capture[k] for k in ("tokens", "examples", "chunks", "tokens_per_second")},
        "lens": {"texts": lens["texts"], "layers": lens["layers"]},
        "patch": {k: patch[k] for k in ("clean_logit_diff", "corrupted_logit_diff") if k in patch},
        "probe": {
            "sets": probe["sets"],
            "best": best,
            "auroc": row["auroc"],
            "recall_at_fpr": row.get("recall_at_fpr"),
            "export_calibration": probe["export"]["calibration"],
        },
        "refusal_direction": {
            "direction": {k: direction["direction"].get(k) for k in ("site", "position", "passed_filters")},
            "evaluation": direction["evaluation"],
            "rates": direction["rates"],
            "loss": direction["loss"],
        },
        "steer_direction": sweep(steer),
        "sae": {
            "steps": sae["steps"],
            "final": sae["final"],
            **{
                k: sae_eval.get(k)
                for k in ("explained_variance", "l0", "mse", "dead", "dense", "ce_loss_recovered", "texts")
            },
        },
        "steer_feature": sweep(feature),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/tether-interp-bench"))
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "instructions")
    parser.add_argument("--tether", default=str(ROOT / ".venv" / "bin" / "tether"))
    parser.add_argument("--fresh", action="store_true", help="delete --work first and run every step")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not (args.data / "harmful_train.json").is_file():
        raise SystemExit(f"--data {args.data}: no harmful_train.json (the instruction sets of ../shared/data)")
    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    timings: dict[str, Any] = {}
    saved = args.work / "timings.json"
    if saved.is_file():
        timings = json.loads(saved.read_text())
    for name, tether_args, done in steps(args.work, args.data):
        if done.is_file() and name in timings:
            print(f"{name}: reused ({timings[name]['wall_s']} s)", flush=True)
            continue
        tether_args = tether_args or feature_step(args.work, args.data)
        print(f"{name}: running ...", flush=True)
        timings[name] = run_step(name, tether_args, args.work / "logs" / f"{name}.log", args.tether)
        saved.write_text(json.dumps(timings, indent=1))
        print(f"{name}: {timings[name]['wall_s']} s, peak RSS {timings[name]['peak_rss_gib']} GiB", flush=True)
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "steps": timings,
        "figures": figures(args.work),
    }
    probe = result["figures"]["probe"]
    prompts = sum(probe["sets"].values())
    result["throughput"] = {
        "capture_tokens_per_second": round(result["figures"]["capture"]["tokens_per_second"], 1),
        "probe_prompts_per_second": round(prompts / timings["probe"]["wall_s"], 1),
    }
    print("\n| step | wall s | peak RSS GiB |\n| --- | ---: | ---: |")
    for name, t in timings.items():
        print(f"| {name} | {t['wall_s']} | {t['peak_rss_gib']} |")
    print(json.dumps({k: result[k] for k in ("throughput", "figures")}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
