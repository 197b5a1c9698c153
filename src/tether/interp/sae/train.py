"""`tether sae train`: an SAE on an activation store, with Adam, warm-ups, checkpoints and metrics.jsonl.

Each step: a batch from :func:`tether.interp.sae.batches.shuffled_batches` (scaled by the input scale),
the architecture's loss (:mod:`tether.interp.sae.architectures`), backward, the decoder-gradient
projection (unit-norm architectures), gradient clipping, Adam, decoder renormalisation. The learning rate
warms up linearly over ``lr_warmup`` of the steps and decays linearly to 0 over the last ``lr_decay``
(Anthropic, April 2024); the L1/L0 coefficient rises linearly over ``sparsity_warmup``. Both are pure
functions of the step, so a resumed run needs no scheduler state.

The run folder holds ``config.yaml``, ``metrics.jsonl`` (a line every ``log_every`` steps),
``checkpoints/`` (``step-NNNNNNNN.safetensors``: weights, Adam moments and the dead-latent counters, and
``state.json`` naming it, written after it; older checkpoints are then deleted), ``sae/`` in SAELens's
format and ``summary.json``, written last. ``--resume`` loads the last checkpoint, drops the lines of
metrics.jsonl after it and replays the batch stream to the same place, so the resumed run computes what
an unstopped run would have computed.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tether.atomic import atomic_path, atomic_write_json, atomic_write_jsonl, atomic_write_text
from tether.errors import DataError, TrainingDiverged, UsageError
from tether.interp.sae.architectures import SparseAutoencoder
from tether.interp.sae.batches import shuffled_batches
from tether.interp.sae.config import SaeTrainConfig
from tether.interp.sae.saelens import hook_name, save_sae
from tether.interp.store import ActivationStore
from tether.jsonsafe import dumps
from tether.report.progress import steps
from tether.runs.folders import open_run_folder

KIND = "sae train"
STATE = "state.json"
SCALE_BATCHES = 8
"""Batches the input scale and the initial b_dec are estimated on."""


def learning_rate(config: SaeTrainConfig, step: int, total: int) -> float:
    """``lr * min(1, (step + 1) / W) * min(1, (total - step) / D)`` with W, D the warm-up and decay steps."""
    warm = max(1, round(config.lr_warmup * total))
    decay = round(config.lr_decay * total)
    factor = min(1.0, (step + 1) / warm)
    if decay:
        factor *= min(1.0, (total - step) / decay)
    return config.lr * factor


def sparsity_coefficient(config: SaeTrainConfig, step: int, total: int) -> float:
    value = config.l1_coefficient if config.architecture == "relu" else config.l0_coefficient
    warm = round(config.sparsity_warmup * total)
    return value * min(1.0, (step + 1) / warm) if warm else value


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` over the rows of ``x`` (float64 sums)."""
    x, x_hat = x.double(), x_hat.double()
    total = (x - x.mean(0)).pow(2).sum()
    return float(1 - (x - x_hat).pow(2).sum() / total) if total > 0 else float("nan")


@dataclass
class Trainer:
    config: SaeTrainConfig
    sae: SparseAutoencoder
    optimizer: torch.optim.Optimizer
    since_fired: torch.Tensor
    """[d_sae] steps since each latent was last active."""
    scale: float
    step: int = 0

    @property
    def window_steps(self) -> int:
        return max(1, math.ceil(self.config.dead_window / self.config.batch_size))

    def dead(self) -> torch.Tensor | None:
        if self.sae.architecture not in ("topk", "batchtopk"):
            return None
        return self.since_fired >= self.window_steps


def site_of(store: ActivationStore, site: str | None) -> str:
    if site is not None:
        if site not in store.sites:
            raise DataError(f"has no site {site!r} (it holds {', '.join(store.sites)})", file=store.folder)
        return site
    if len(store.sites) != 1:
        raise UsageError(f"{store.folder} holds sites {', '.join(store.sites)}: pass --site")
    return store.sites[0]


def _new_trainer(config: SaeTrainConfig, store: ActivationStore, site: str, d_sae: int) -> Trainer:
    generator = torch.Generator().manual_seed(config.seed)
    sae = SparseAutoencoder(
        store.d_model,
        d_sae,
        config.architecture,
        k=config.k,
        aux_k=config.aux_k,
        aux_coefficient=config.aux_coefficient,
        threshold=config.threshold,
        bandwidth=config.bandwidth,
        generator=generator,
    )
    optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr, betas=(0.9, 0.999), fused=True)
    return Trainer(config, sae, optimizer, torch.zeros(d_sae, dtype=torch.int64), 1.0)


@torch.no_grad()
def _initialise(trainer: Trainer, store: ActivationStore, site: str) -> None:
    config = trainer.config
    stream = shuffled_batches(store, site, config.batch_size, buffer_tokens=config.buffer_tokens, seed=config.seed + 1)
    sample = torch.cat([next(stream) for _ in range(SCALE_BATCHES)])
    if config.normalize:
        norm = float(sample.norm(dim=1).mean())
        trainer.scale = math.sqrt(store.d_model) / norm if norm > 0 else 1.0
    trainer.sae.init_from(sample * trainer.scale)


def _checkpoint(trainer: Trainer, folder: Path) -> None:
    from safetensors.torch import save_file

    tensors = {f"sae.{k}": v.detach().clone().contiguous() for k, v in trainer.sae.state_dict().items()}
    names = {id(p): n for n, p in trainer.sae.named_parameters()}
    adam_step = 0.0
    for group in trainer.optimizer.param_groups:
        for param in group["params"]:
            state = trainer.optimizer.state.get(param)
            if state:
                tensors[f"adam.{names[id(param)]}.exp_avg"] = state["exp_avg"].contiguous()
                tensors[f"adam.{names[id(param)]}.exp_avg_sq"] = state["exp_avg_sq"].contiguous()
                adam_step = float(state["step"])
    tensors["since_fired"] = trainer.since_fired
    name = f"step-{trainer.step:08d}.safetensors"
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / name) as tmp:
        save_file(tensors, str(tmp))
    cfg = trainer.config
    atomic_write_json(
        folder / STATE,
        {
            "step": trainer.step,
            "file": name,
            "scale": trainer.scale,
            "adam_step": adam_step,
            "architecture": cfg.architecture,
            "d_in": trainer.sae.d_in,
            "d_sae": trainer.sae.d_sae,
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "tokens": cfg.tokens,
        },
    )
    for old in folder.glob("step-*.safetensors"):
        if old.name != name:
            old.unlink()


def _restore(trainer: Trainer, folder: Path, site: str) -> None:
    from safetensors.torch import load_file

    path = folder / STATE
    state = json.loads(path.read_text(encoding="utf-8"))
    cfg = trainer.config
    now = {"architecture": cfg.architecture, "d_sae": trainer.sae.d_sae, "batch_size": cfg.batch_size, "seed": cfg.seed}
    now["tokens"] = cfg.tokens
    for key, value in now.items():
        if state.get(key) != value:
            raise UsageError(
                f"--resume: the run in {folder.parent} was started with {key} {state.get(key)}, not {value}; "
                "pass the same settings or --overwrite"
            )
    tensors = load_file(str(folder / state["file"]))
    trainer.sae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("sae.")})
    for name, param in trainer.sae.named_parameters():
        if f"adam.{name}.exp_avg" in tensors:
            trainer.optimizer.state[param] = {
                "step": torch.tensor(state["adam_step"]),
                "exp_avg": tensors[f"adam.{name}.exp_avg"].clone(),
                "exp_avg_sq": tensors[f"adam.{name}.exp_avg_sq"].clone(),
            }
    trainer.since_fired = tensors["since_fired"].clone()
    trainer.scale = float(state["scale"])
    trainer.step = int(state["step"])


def _keep_metrics_until(path: Path, step: int) -> None:
    if not path.exists():
        return
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    atomic_write_jsonl(path, [r for r in rows if r.get("step", 0) <= step])


def train_steps(
    trainer: Trainer,
    store: ActivationStore,
    site: str,
    total: int,
    *,
    out: Path | None,
    console: Any,
    stop_at: int | None = None,
) -> dict[str, Any]:
    """Train from ``trainer.step`` to ``total`` (or ``stop_at``), logging and checkpointing into ``out``."""
    config, sae, optimizer = trainer.config, trainer.sae, trainer.optimizer
    stream = shuffled_batches(
        store, site, config.batch_size, buffer_tokens=config.buffer_tokens, seed=config.seed, skip=trainer.step
    )
    params = [p for p in sae.parameters() if p.requires_grad]
    metrics_file = out / "metrics.jsonl" if out is not None else None
    last: dict[str, Any] = {}
    end = total if stop_at is None else min(total, stop_at)
    started, first = time.perf_counter(), trainer.step
    with steps(console, KIND, total, enabled=config.progress and console is not None) as progress:
        progress.advance(trainer.step)
        while trainer.step < end:
            step = trainer.step
            x = next(stream)
            if trainer.scale != 1.0:
                x.mul_(trainer.scale)
            lr = learning_rate(config, step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            out_step = sae.train_step(x, sparsity_coefficient(config, step, total), trainer.dead())
            optimizer.zero_grad(set_to_none=True)
            out_step.loss.backward()
            sae.project_decoder_grad()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm, foreach=True)
            optimizer.step()
            sae.after_step()
            trainer.since_fired += 1
            trainer.since_fired[out_step.fired] = 0
            trainer.step += 1
            if trainer.step % config.log_every == 0 or trainer.step == total:
                loss = float(out_step.loss.detach())
                if not math.isfinite(loss):
                    raise TrainingDiverged(f"sae train: loss {loss} at step {step}; the last checkpoint is kept")
                last = {
                    "step": trainer.step,
                    "tokens": trainer.step * config.batch_size,
                    "lr": lr,
                    "loss": loss,
                    "mse": float(out_step.mse.detach()),
                    "sparsity": float(out_step.sparsity.detach()),
                    "l0": float(out_step.l0.detach()),
                    "explained_variance": explained_variance(x, out_step.x_hat.detach()),
                    "dead": int((trainer.since_fired >= trainer.window_steps).sum()),
                }
                if metrics_file is not None:
                    with metrics_file.open("a", encoding="utf-8") as handle:
                        handle.write(dumps(last) + "\n")
            if out is not None and trainer.step % config.checkpoint_every == 0 and trainer.step < total:
                _checkpoint(trainer, out / "checkpoints")
            progress.advance()
    elapsed = time.perf_counter() - started
    trained = (trainer.step - first) * config.batch_size
    return {**last, "tokens_per_second": trained / elapsed if elapsed > 0 else None, "trained_tokens": trained}


def run_sae_train(config: SaeTrainConfig, *, console: Any, stop_at: int | None = None) -> dict[str, Any]:
    """Train (or resume) an SAE; returns the summary (also summary.json). ``stop_at``: stop after that step
    without finishing (tests of resume)."""
    from tether.config import dump_config

    store = ActivationStore(config.activations)
    site = site_of(store, config.site)
    d_sae = config.d_sae or config.expansion * store.d_model
    if config.architecture in ("topk", "batchtopk") and config.k > d_sae:
        raise UsageError(f"--k {config.k} exceeds the SAE's {d_sae} latents")
    total = config.tokens // config.batch_size
    out = open_run_folder(config.out, KIND, resume=config.resume, overwrite=config.overwrite)
    if config.resume and (out / "summary.json").exists():
        if console is not None:
            console.print(f"sae train: {out} is already finished", highlight=False)
        return json.loads((out / "summary.json").read_text(encoding="utf-8"))
    atomic_write_text(out / "config.yaml", dump_config(config))
    trainer = _new_trainer(config, store, site, d_sae)
    if config.resume and (out / "checkpoints" / STATE).exists():
        _restore(trainer, out / "checkpoints", site)
        _keep_metrics_until(out / "metrics.jsonl", trainer.step)
        if console is not None:
            console.print(f"sae train: resuming at step {trainer.step} of {total}", highlight=False)
    else:
        (out / "metrics.jsonl").unlink(missing_ok=True)
        _initialise(trainer, store, site)
    result = train_steps(trainer, store, site, total, out=out, console=console, stop_at=stop_at)
    if trainer.step < total:
        _checkpoint(trainer, out / "checkpoints")
        return result
    metadata = {
        "model_name": store.model,
        "tether_site": site,
        "hook_name": hook_name(site),
        "training_tokens": total * config.batch_size,
        "input_scale": trainer.scale,
    }
    save_sae(out / "sae", trainer.sae, scale=trainer.scale, metadata=metadata)
    summary = {
        "architecture": config.architecture,
        "site": site,
        "d_in": store.d_model,
        "d_sae": d_sae,
        "steps": total,
        "input_scale": trainer.scale,
        "final": result,
        "sae": str(out / "sae"),
    }
    atomic_write_json(out / "summary.json", summary)
    if console is not None:
        final = ", ".join(f"{k} {result[k]:.4g}" for k in ("mse", "l0", "explained_variance") if k in result)
        console.print(f"sae train: {total} steps; {final}; SAE in {out / 'sae'}", highlight=False)
    return summary
