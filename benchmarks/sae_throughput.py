"""SAE training throughput and memory of `tether sae train` against SAELens, on the same cached activations.

Run (about 3 minutes on 2 idle CPU cores, plus a one-time capture of the activations, about 5 minutes)::

    .venv/bin/python benchmarks/sae_throughput.py --json sae_throughput.json

SAELens runs in its own venv (never in .venv), installed as benchmarks/requirements-sae-lens.txt says;
``--peer-python`` points at its interpreter (default .venv-sae-lens/bin/python).

What runs
---------
1. Capture (once, cached in ``--work``): SmolLM2-135M-Instruct (fp32), ``resid_post.15`` (the residual
   stream after layer 15 of 30) of the harmless instructions of ../shared/data/instructions in the chat
   template with the assistant turn opened, every token but the first (``<|im_start|>``, the attention
   sink, whose norm is about 100 times the others'): ``harmless_train`` until ``--capture-tokens`` tokens
   (training; ``--tokens`` above that reads the store again, reshuffled), ``harmless_val`` until
   ``--heldout-tokens`` (held out). The snippet uses tether's hooks (``tether.interp.hooks.hooked``,
   stopping the forward pass at the site) and store (``ActivationWriter``, 64 MiB chunks); its tokens/s
   is reported as capture throughput.
2. tether, then SAELens, each in a fresh process: a TopK SAE, d_sae = 8 x 576, k = ``--k``, batch
   ``--batch-size``, Adam lr ``--lr`` (betas 0.9, 0.999), linear warm-up over 1% of the steps and linear
   decay to 0 over the last 20%, gradient clipping at 1, AuxK coefficient 1/32 with latents dead after
   ``--dead-window`` tokens, inputs scaled to E||x|| = sqrt(d_in) (SAELens:
   ``normalize_activations="expected_average_only_in"``, estimated on 8 batches as tether does), fp32,
   the same torch threads. Both read the same batches in the same order: tether's shuffle buffer
   (65,536 tokens, seed 0) reading the store chunk by chunk; SAELens gets the same stream (the same
   algorithm and seed, re-implemented in its child since tether is not installed there) as its
   ``DataProvider`` for ``SAETrainer``. Architecture details stay each library's own: tether keeps
   unit-norm decoder rows (Gao et al.) and initialises ``b_dec`` to the data mean; SAELens keeps its
   defaults (decoder rows initialised at norm 0.1, ``rescale_acts_by_decoder_norm``, ``b_dec`` 0).
3. Both SAEs (SAELens's saved by ``save_inference_model``, loaded with tether's SAELens-format reader)
   are measured by the same code on the held-out tokens: explained variance
   ``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``, L0, MSE, dead latents.

Measurements (each side runs ``--repeats`` times, alternating with the other; the table shows the best
rate, all rates are in the JSON; peak RSS is the largest of the runs): tokens/s over the training steps
only (tether: its loop's timer; SAELens: from the first training batch its trainer requests to the end of
``fit``; the scale estimation is outside both); peak RSS of each child alone (``os.wait4``: imports, data,
training, saving); wall time of each child.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

SITE = "resid_post.15"
BUFFER_TOKENS = 65_536
SEED = 0
SCALE_BATCHES = 8


def shuffled_batches(folder: Path, site: str, batch_size: int, buffer_tokens: int, seed: int):
    """The batch stream of ``tether.interp.sae.batches.shuffled_batches`` (same algorithm, seed and order),
    for the SAELens child where tether is not installed."""
    import torch
    from safetensors import safe_open

    index = json.loads((folder / "index.json").read_text())
    generator = torch.Generator().manual_seed(seed)
    capacity = max(2 * batch_size, min(buffer_tokens, index["tokens"]))
    pending, held = [], 0
    while True:
        for number in torch.randperm(len(index["chunks"]), generator=generator).tolist():
            with safe_open(str(folder / index["chunks"][number]["file"]), framework="pt") as handle:
                part = handle.get_tensor(site).float()
            pending.append(part)
            held += part.shape[0]
            while held >= capacity:
                buffer = torch.cat(pending) if len(pending) > 1 else pending[0]
                order = torch.randperm(buffer.shape[0], generator=generator)
                serve = (buffer.shape[0] // 2) // batch_size * batch_size
                for start in range(0, serve, batch_size):
                    yield buffer.index_select(0, order[start : start + batch_size])
                pending = [buffer.index_select(0, order[serve:])]
                held = pending[0].shape[0]


def schedule(spec: dict) -> tuple[int, int, int]:
    steps = spec["tokens"] // spec["batch_size"]
    return steps, max(1, round(0.01 * steps)), round(0.2 * steps)


def child_saelens(spec: dict) -> None:
    import torch
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(SEED)
    steps, warm, decay = schedule(spec)
    cfg = TopKTrainingSAEConfig(
        d_in=spec["d_in"],
        d_sae=spec["d_sae"],
        k=spec["k"],
        aux_loss_coefficient=1 / 32,
        normalize_activations="expected_average_only_in",
        dtype="float32",
        device="cpu",
    )
    sae = TopKTrainingSAE(cfg)
    stream = shuffled_batches(Path(spec["train"]), SITE, spec["batch_size"], BUFFER_TOKENS, SEED)
    # tether estimates its scale on a separate stream (seed + 1); give SAELens the same 8 batches first
    scale_stream = shuffled_batches(Path(spec["train"]), SITE, spec["batch_size"], BUFFER_TOKENS, SEED + 1)
    marks: dict[str, float] = {}

    def provider():
        for _ in range(SCALE_BATCHES):
            yield next(scale_stream)
        marks["start"] = time.perf_counter()
        yield from stream

    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * spec["batch_size"],
        train_batch_size_samples=spec["batch_size"],
        lr=spec["lr"],
        lr_end=spec["lr"],
        lr_warm_up_steps=warm,
        lr_decay_steps=decay,
        adam_beta1=0.9,
        adam_beta2=0.999,
        dead_feature_window=math.ceil(spec["dead_window"] / spec["batch_size"]),
        feature_sampling_window=10**9,
        n_batches_for_norm_estimate=SCALE_BATCHES,
        device="cpu",
    )
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=provider())
    trainer.fit()
    elapsed = time.perf_counter() - marks["start"]
    sae.save_inference_model(spec["sae_out"])
    result = {"tokens_per_second": steps * spec["batch_size"] / elapsed, "train_s": elapsed, "steps": steps}
    result["threads"] = torch.get_num_threads()
    Path(spec["result"]).write_text(json.dumps(result))


def child_tether(spec: dict) -> None:
    import torch

    from tether.interp.sae.config import SaeTrainConfig
    from tether.interp.sae.train import run_sae_train

    steps, _, _ = schedule(spec)
    config = SaeTrainConfig(
        activations=Path(spec["train"]),
        site=SITE,
        out=Path(spec["run_out"]),
        overwrite=True,
        architecture="topk",
        d_sae=spec["d_sae"],
        k=spec["k"],
        batch_size=spec["batch_size"],
        tokens=steps * spec["batch_size"],
        lr=spec["lr"],
        lr_warmup=0.01,
        lr_decay=0.2,
        aux_coefficient=1 / 32,
        dead_window=spec["dead_window"],
        buffer_tokens=BUFFER_TOKENS,
        seed=SEED,
        log_every=max(1, steps // 10),
        checkpoint_every=10**9,
        progress=False,
    )
    summary = run_sae_train(config, console=None)
    final = summary["final"]
    result = {"tokens_per_second": final["tokens_per_second"], "steps": steps, "threads": torch.get_num_threads()}
    result["train_s"] = final["trained_tokens"] / final["tokens_per_second"]
    Path(spec["result"]).write_text(json.dumps(result))


def capture(out: Path, split: str, tokens: int) -> dict:
    """resid_post.15 of the embedded model on ``split``'s instructions until ``tokens`` tokens (cached)."""
    if (out / "index.json").exists() and json.loads((out / "index.json").read_text()).get("complete"):
        return json.loads((out / "capture.json").read_text())
    import shutil

    import torch

    from common import SHARED_DATA
    from tether.interp.hooks import hooked
    from tether.interp.sites import parse_site
    from tether.interp.store import ActivationWriter
    from tether.interp.texts import model_inputs, read_texts
    from tether.models.loading import load_model, load_tokenizer

    shutil.rmtree(out, ignore_errors=True)
    model = load_model("smollm2-135m-instruct").eval()
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    tokenizer.padding_side = "right"
    texts = model_inputs(tokenizer, read_texts(SHARED_DATA / "instructions" / f"{split}.json"))
    site = parse_site(SITE, len(model.model.layers))
    meta = {"model": "smollm2-135m-instruct"}
    writer = ActivationWriter(out, [SITE], d_model=576, budget_bytes=64 * 2**20, meta=meta)
    seen: dict = {}

    class Stop(Exception):
        pass

    def keep_and_stop(activation):
        seen["act"] = activation
        raise Stop  # the layers above the site and the LM head are never run

    started, done, example = time.perf_counter(), 0, 0
    with torch.no_grad(), hooked(model, [(site, keep_and_stop)]):
        for start in range(0, len(texts), 32):
            batch = tokenizer(texts[start : start + 32], return_tensors="pt", padding=True)
            with contextlib.suppress(Stop):
                model(**batch)
            for row in range(batch["input_ids"].shape[0]):
                n = int(batch["attention_mask"][row].sum())
                # position 0 (<|im_start|>, the attention sink, ~100x the norm of other tokens) left out
                positions = torch.arange(1, n)
                cols = {"example": torch.full((n - 1,), example), "position": positions}
                cols["token_id"] = batch["input_ids"][row, 1:n]
                writer.add(cols, {SITE: seen["act"][row, 1:n]}, examples=1)
                example += 1
                done += n - 1
            if done >= tokens:
                break
    writer.close()
    info = {
        "split": split,
        "tokens": done,
        "examples": example,
        "tokens_per_second": done / (time.perf_counter() - started),
    }
    (out / "capture.json").write_text(json.dumps(info))
    return info


def heldout_metrics(sae_folder: Path, store: Path) -> dict:
    from tether.interp.sae.metrics import reconstruction_metrics, store_batches
    from tether.interp.sae.saelens import load_sae
    from tether.interp.store import ActivationStore

    sae, cfg = load_sae(sae_folder)
    result = reconstruction_metrics(sae, store_batches(ActivationStore(store), SITE, 4096, None))
    return {**result, "saved_architecture": cfg["architecture"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tether-sae-bench"))
    parser.add_argument("--peer-python", default=str(Path(__file__).resolve().parents[1] / ".venv-sae-lens/bin/python"))
    parser.add_argument("--tokens", type=int, default=245_760, help="training tokens (steps = tokens // batch size)")
    parser.add_argument("--capture-tokens", type=int, default=122_880, help="tokens captured for training")
    parser.add_argument("--heldout-tokens", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument(
        "--dead-window", type=int, default=200_000, help="tokens without firing before a latent is dead"
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per side, alternated; the best rate is shown")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(Path(args.child).read_text())
        (child_saelens if spec["side"] == "saelens" else child_tether)(spec)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import command_line, machine_info, markdown_table, matmul_peak, run_child, trust_notes

    args.work.mkdir(parents=True, exist_ok=True)
    machine = machine_info(("torch", "transformers", "safetensors"))
    peak_before = matmul_peak()
    train_info = capture(args.work / "train", "harmless_train", args.capture_tokens)
    held_info = capture(args.work / "heldout", "harmless_val", args.heldout_tokens)
    spec_base = {
        "train": str(args.work / "train"),
        "d_in": 576,
        "d_sae": 576 * args.expansion,
        "k": args.k,
        "batch_size": args.batch_size,
        "tokens": args.tokens,
        "lr": args.lr,
        "dead_window": args.dead_window,
    }
    runs: dict[str, dict] = {}
    for repeat in range(args.repeats):  # alternate the sides, so a change in the machine's load hits both
        for side, python in (("tether", sys.executable), ("saelens", args.peer_python)):
            spec = {**spec_base, "side": side, "result": str(args.work / f"{side}.result.json")}
            spec |= {"run_out": str(args.work / "tether-run"), "sae_out": str(args.work / "saelens-sae")}
            spec_file = args.work / f"{side}.spec.json"
            spec_file.write_text(json.dumps(spec))
            print(f"running {side} ({repeat + 1} of {args.repeats}) ...", flush=True)
            env = {"WANDB_MODE": "disabled"}
            if side == "tether":
                env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
            argv = [python, str(Path(__file__).resolve()), "--child", str(spec_file)]
            child = run_child(argv, args.work / f"{side}.log", env)
            if child.returncode != 0:
                sys.exit(f"{side} failed (exit {child.returncode}); last lines of its log:\n{child.tail()}")
            run = json.loads(Path(spec["result"]).read_text())
            run.update(wall_s=child.wall_s, peak_rss_gib=child.max_rss_bytes / 2**30)
            folder = args.work / "tether-run" / "sae" if side == "tether" else args.work / "saelens-sae"
            run["heldout"] = heldout_metrics(folder, args.work / "heldout")
            best = runs.get(side)
            rates = [*(best or {}).get("all_tokens_per_second", []), run["tokens_per_second"]]
            rss = max(run["peak_rss_gib"], (best or {}).get("peak_rss_gib", 0.0))
            if best is None or run["tokens_per_second"] > best["tokens_per_second"]:
                best = run
            runs[side] = {**best, "all_tokens_per_second": rates, "peak_rss_gib": rss}
    peak_after = matmul_peak()
    machine["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    t, s = runs["tether"], runs["saelens"]
    rows = []
    for side, run in (("tether", t), ("SAELens", s)):
        h = run["heldout"]
        rows.append([side, f"{run['tokens_per_second']:,.0f}", f"{run['peak_rss_gib']:.2f}", f"{run['wall_s']:.0f}",
                     f"{h['explained_variance']:.4f}", f"{h['l0']:.1f}", f"{h['mse']:.5f}", h["dead"]])  # fmt: skip
    rows.append(["tether / SAELens", f"{t['tokens_per_second'] / s['tokens_per_second']:.2f}x",
                 f"{t['peak_rss_gib'] / s['peak_rss_gib']:.2f}x", "", "", "", "", ""])  # fmt: skip
    peak = max(peak_before["gflops_best"], peak_after["gflops_best"])
    lines = [
        f"Command: `{command_line()}`",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores, {machine['memory_gib']} GiB RAM, torch "
        f"threads {machine['torch_threads']}, load average {machine['load_avg_1m']} before / "
        f"{machine['load_avg_1m_after']} after; fp32 matmul peak {peak:.1f} GFLOP/s",
        "",
        f"TopK SAE on SmolLM2-135M-Instruct {SITE}: d_sae {spec_base['d_sae']}, k {args.k}, batch {args.batch_size}, "
        f"{t['steps']} steps ({t['steps'] * args.batch_size:,} tokens of {train_info['tokens']:,} captured), "
        f"lr {args.lr}; held out: {held_info['tokens']:,} tokens of harmless_val. "
        f"Capture: {train_info['tokens_per_second']:,.0f} tokens/s.",
        "",
        markdown_table(
            ["", "train tokens/s", "peak RSS GiB", "wall s", "held-out EV", "held-out L0", "held-out MSE", "dead"], rows
        ),
        "",
        *trust_notes(machine, t["steps"]),
    ]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": machine, "capture": [train_info, held_info], "runs": runs, "settings": spec_base}, indent=2
            )
        )


if __name__ == "__main__":
    main()
