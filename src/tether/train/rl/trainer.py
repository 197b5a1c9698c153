"""``tether ppo`` / ``rloo`` / ``grpo``: the online loop shared by the three algorithms.

Each step: take ``prompts_per_step`` prompts (a fresh permutation every pass over the data; each process
its own share), sample responses with the policy (the shared generation engine), score them with the
composed reward, compute the old policy's and the reference's per-token log-probs (and values for PPO) in
no-gradient passes, form advantages (:mod:`tether.train.rl.algorithms`), then run ``epochs_per_step``
passes of minibatch updates with the clipped objective. With LoRA the reference is the policy with its
adapters disabled (one model in memory); otherwise a frozen copy. On a CUDA machine with vLLM installed
the rollouts come from a colocated vLLM engine, into which the policy's weights (LoRA merged) are loaded
in place before each rollout; elsewhere from Hugging Face ``generate``.

Monitors logged every step to ``metrics.jsonl`` (and plotted in ``report.html``): reward, KL to the
reference (mean per response, k1 estimate), the KL coefficient, response length, entropy, share of
truncated responses, unscored samples, policy and value losses, clip fractions, throughput. Held-out
prompts are measured before training, every ``eval_every`` steps and at the end. Checkpoints are atomic and
resume exactly (weights, optimizer, KL coefficient, RNG); ``--kl-stop`` ends the run early when the KL
passes a bound, keeping the model.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch

from tether.atomic import atomic_write_text
from tether.config import PPOConfig, RLConfig
from tether.data.prompts import RLPrompt, read_prompts
from tether.data.tokenization import ChatEncoder, cap_messages
from tether.errors import TrainingDiverged
from tether.generation.engine import GenerationEngine, SamplingParams, chat_prompt_ids
from tether.jsonsafe import dumps
from tether.losses.kl import KL_ESTIMATORS, AdaptiveKLController, kl_k1
from tether.losses.ppo import clipped_policy_loss, clipped_value_loss, masked_mean
from tether.models.loading import load_model, load_tokenizer
from tether.reward.sources import CompositeReward, build_components, check_reward_specs
from tether.stats import bootstrap_mean
from tether.train.allocator import return_freed_memory
from tether.train.checkpoint import LoopState, latest_checkpoint, resume_latest, save_checkpoint
from tether.train.loop import LoopSettings, ProgressBar, make_accelerator, seed_everything
from tether.train.memory import read_shape
from tether.train.outputs import check_output, save_final_model
from tether.train.preflight import Build, check_memory
from tether.train.recipe import has_fresh_adapters, load_trainable_model, open_output, prepare_for_training
from tether.train.rl.algorithms import ALGORITHMS, Algorithm, compute_advantages, token_kl, valid_mask
from tether.train.rl.rollout import Rollout, response_logprobs, response_values, sequence_batch
from tether.train.rl.vllm_rollouts import policy_weights, rollout_vllm_engine
from tether.train.workloads import rl_workload


def _to(batch: dict[str, torch.Tensor], device: Any) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


class OnlineRL:
    """Owns the models, the optimizer and the state of one run; :meth:`run` does the steps."""

    def __init__(self, config: RLConfig, *, console: Any = None) -> None:
        return_freed_memory()
        self.config = config
        self.console = console
        self.algorithm: Algorithm = ALGORITHMS[type(config).command]
        self.prompts = read_prompts(config.prompts, config.prompts_format, limit=config.prompts_limit)
        self.eval_prompts = (
            read_prompts(config.eval_prompts, config.prompts_format, limit=config.eval_limit, skip=config.eval_skip)
            if config.eval_prompts
            else []
        )
        check_reward_specs(config.reward, self.prompts + self.eval_prompts)
        check_output(config.out, resume=config.resume, overwrite=config.overwrite, kind=type(config).command)
        settings = LoopSettings(out=config.out, lr=config.lr, batch_size=1, mixed_precision=config.mixed_precision)
        self.accelerator = make_accelerator(settings)
        seed_everything(config.seed)
        self.tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
        main_console = console if self.accelerator.is_main_process else None
        self.config = config = check_memory(config, self._memory_build(), console=main_console)
        self._load_models()
        self.vllm = rollout_vllm_engine(config, self.tokenizer)
        self._weights_step = 0  # the step whose weights vLLM serves
        self.reward = CompositeReward(
            build_components(config.reward, dtype=config.dtype, device=self.accelerator.device)
        )
        open_output(config, self.accelerator)
        self.kl = AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
        self.state = LoopState(world_size=self.accelerator.num_processes, grad_accum=1)

    # -- setup ------------------------------------------------------------------------------------------
    def _load_models(self) -> None:
        config = self.config
        policy = load_trainable_model(config)
        self.reference = None
        if not has_fresh_adapters(config, policy):
            self.reference = load_model(config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code)
            self.reference.requires_grad_(False).eval().to(self.accelerator.device)
        groups = [{"params": [p for p in policy.parameters() if p.requires_grad], "lr": config.lr}]
        value = None
        if isinstance(config, PPOConfig):
            value = self._load_value_model(config)
            groups.append(
                {"params": [p for p in value.parameters() if p.requires_grad], "lr": config.value_lr or config.lr}
            )
        optimizer = torch.optim.AdamW(groups)
        if value is None:
            self.policy, self.optimizer = self.accelerator.prepare(policy, optimizer)
        else:
            self.policy, self.value, self.optimizer = self.accelerator.prepare(policy, value, optimizer)
        self.value = value if value is None else self.value
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)

    def _load_value_model(self, config: PPOConfig) -> Any:
        from tether.models.reward import load_scalar_model

        value = load_scalar_model(
            config.value_model or config.model,
            pad_token_id=self.tokenizer.pad_token_id,
            dtype=config.dtype,
            trust_remote_code=config.trust_remote_code,
            trainable_adapter=True,
        )
        return prepare_for_training(value, config, task_type="SEQ_CLS")

    def _sync_vllm(self) -> None:
        """Load the current policy weights into vLLM (LoRA merged in for the copy, then unmerged)."""
        if self.vllm is None or self._weights_step == self.state.step:
            return
        self.vllm.load_weights(policy_weights(self.unwrapped_policy))
        self._weights_step = self.state.step

    @property
    def unwrapped_policy(self) -> Any:
        return self.accelerator.unwrap_model(self.policy)

    def _trainables(self) -> torch.nn.Module:
        modules = {"policy": self.unwrapped_policy}
        if self.value is not None:
            modules["value"] = self.accelerator.unwrap_model(self.value)
        return torch.nn.ModuleDict(modules)

    # -- rollouts ---------------------------------------------------------------------------------------
    def step_prompts(self, step: int) -> list[RLPrompt]:
        """This process's prompts for ``step``: consecutive slices of per-pass permutations."""
        per_step = self.config.prompts_per_step
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        start = (step * world + rank) * per_step
        chosen = []
        for position in range(start, start + per_step):
            epoch, offset = divmod(position, len(self.prompts))
            order = list(range(len(self.prompts)))
            random.Random(self.config.seed + epoch).shuffle(order)
            chosen.append(self.prompts[order[offset]])
        return chosen

    def _prompt_ids(self, encoder: ChatEncoder, prompt: RLPrompt) -> list[int]:
        """The prompt's last ``max_prompt_length`` ids; messages are cut first to the characters that can
        hold them (:meth:`ChatEncoder.char_cap`), so a huge prompt is never tokenized whole."""
        n = self.config.max_prompt_length
        return chat_prompt_ids(encoder, cap_messages(prompt.messages, encoder.char_cap(n), "end"))[-n:]

    def _memory_build(self) -> Build:
        """The pre-flight's workload builder: the model's shape and the longest prompt, read once."""
        encoder = ChatEncoder(self.tokenizer)
        longest = max(len(self._prompt_ids(encoder, p)) for p in self.prompts + self.eval_prompts)
        config = self.config
        shape = read_shape(config.model, trust_remote_code=config.trust_remote_code)
        return lambda c: None if shape is None else rl_workload(c, shape, longest_prompt=longest)

    @torch.no_grad()
    def sample(self, prompts: list[RLPrompt], samples: int, seed: int) -> tuple[Rollout, list[RLPrompt]]:
        """Generate ``samples`` responses per prompt and score them."""
        config = self.config
        engine = GenerationEngine(self.unwrapped_policy, self.tokenizer, batch_size=config.rollout_batch_size)
        expanded = [p for p in prompts for _ in range(samples)]
        prompt_ids = [self._prompt_ids(engine.encoder, p) for p in expanded]
        params = SamplingParams(
            max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_k=0, seed=seed
        )
        if self.vllm is not None:
            self._sync_vllm()
            engine = self.vllm
        response_ids = engine.generate_from_ids(prompt_ids, params)
        eos = self.tokenizer.eos_token_id
        truncated = torch.tensor([not r or r[-1] != eos for r in response_ids])
        texts = [self.tokenizer.decode(r, skip_special_tokens=True).strip() for r in response_ids]
        totals, _ = self.reward(expanded, texts)
        scores = torch.tensor([math.nan if t is None else t for t in totals], dtype=torch.float32)
        if config.missing_eos_penalty:
            scores = scores - config.missing_eos_penalty * truncated.float()
        group = torch.arange(len(prompts)).repeat_interleave(samples)
        return Rollout(prompt_ids, response_ids, texts, truncated, group, scores), expanded

    @torch.no_grad()
    def score_tokens(self, rollout: Rollout, *, with_values: bool) -> None:
        """Old policy log-probs and entropy, reference log-probs, values: no-gradient passes in batches."""
        width = rollout.mask.shape[1]
        pieces: dict[str, list[torch.Tensor]] = {"logps": [], "entropy": [], "ref": [], "values": []}
        size = self.config.rollout_batch_size
        device = self.accelerator.device
        policy = self.unwrapped_policy
        policy.eval()
        try:
            for start in range(0, len(rollout), size):
                rows = slice(start, start + size)
                batch = _to(
                    sequence_batch(rollout.prompt_ids[rows], rollout.response_ids[rows], self.tokenizer.pad_token_id),
                    device,
                )
                with self.accelerator.autocast():
                    logps, entropy = response_logprobs(
                        policy, batch, width=width, temperature=self.config.temperature, with_entropy=True
                    )
                    assert entropy is not None, "asked for with_entropy=True"
                    pieces["logps"].append(logps.cpu())
                    pieces["entropy"].append(entropy.cpu())
                    pieces["ref"].append(self._reference_logprobs(batch, width).cpu())
                    if with_values:
                        value = self.accelerator.unwrap_model(self.value)
                        value.eval()
                        pieces["values"].append(response_values(value, batch, width=width).cpu())
                        value.train()
        finally:
            policy.train()
        rollout.logps = torch.cat(pieces["logps"])
        rollout.entropy = torch.cat(pieces["entropy"])
        rollout.ref_logps = torch.cat(pieces["ref"])
        rollout.values = torch.cat(pieces["values"]) if with_values else None

    def _reference_logprobs(self, batch: dict[str, torch.Tensor], width: int) -> torch.Tensor:
        if self.reference is not None:
            return response_logprobs(self.reference, batch, width=width, temperature=self.config.temperature)[0]
        with self.unwrapped_policy.disable_adapter():
            return response_logprobs(self.unwrapped_policy, batch, width=width, temperature=self.config.temperature)[0]

    # -- updates ----------------------------------------------------------------------------------------
    def update(self, rollout: Rollout) -> dict[str, float]:
        config = self.config
        mask = valid_mask(rollout)
        totals: dict[str, list[float]] = {}
        device = self.accelerator.device
        generator = torch.Generator().manual_seed(config.seed * 100003 + self.state.step)
        for _ in range(config.epochs_per_step):
            order = torch.randperm(len(rollout), generator=generator).tolist()
            for start in range(0, len(order), config.minibatch_size):
                rows = order[start : start + config.minibatch_size]
                metrics = self._minibatch_step(rollout, rows, mask, device)
                for key, value in metrics.items():
                    totals.setdefault(key, []).append(value)
        return {key: sum(values) / len(values) for key, values in totals.items()}

    def _minibatch_step(self, rollout: Rollout, rows: list[int], mask: torch.Tensor, device: Any) -> dict[str, float]:
        config = self.config
        width = max(len(rollout.response_ids[i]) for i in rows)
        batch = _to(
            sequence_batch(
                [rollout.prompt_ids[i] for i in rows],
                [rollout.response_ids[i] for i in rows],
                self.tokenizer.pad_token_id,
            ),
            device,
        )
        take = lambda t: t[rows, :width].to(device)  # noqa: E731
        m = take(mask)
        metrics: dict[str, float] = {}
        with self.accelerator.autocast():
            logps, _ = response_logprobs(self.policy, batch, width=width, temperature=config.temperature)
            terms, clipped = clipped_policy_loss(logps, take(rollout.logps), take(rollout.advantages), clip=config.clip)
            if self.algorithm.kl_in_loss:
                terms = terms + self.kl.beta * KL_ESTIMATORS[config.kl_estimator](logps, take(rollout.ref_logps))
            if self.algorithm.aggregation == "sequence":
                policy_loss = masked_mean(terms, m, dim=1)[m.sum(1) > 0].mean() if m.sum() > 0 else terms.sum() * 0
            else:
                policy_loss = masked_mean(terms, m)
            loss = policy_loss
            if isinstance(config, PPOConfig):
                assert rollout.values is not None and rollout.returns is not None, "PPO rollouts carry both"
                values = response_values(self.value, batch, width=width)
                value_terms, value_clipped = clipped_value_loss(
                    values, take(rollout.values), take(rollout.returns), clip=config.value_clip
                )
                value_loss = masked_mean(value_terms, m)
                loss = loss + config.vf_coef * value_loss
                metrics["value/loss"] = float(value_loss.detach())
                metrics["value/clipfrac"] = float(masked_mean(value_clipped, m))
            self.accelerator.backward(loss)
        max_norm = config.max_grad_norm if config.max_grad_norm is not None else float("inf")
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = float(self.accelerator.clip_grad_norm_(params, max_norm))
        if not (math.isfinite(float(loss.detach())) and math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            kept = latest_checkpoint(Path(self.config.out) / "checkpoints") or "none written yet"
            raise TrainingDiverged(
                f"step {self.state.step + 1}: loss={float(loss)} grad_norm={grad_norm} is not finite; "
                f"training stopped. Last good checkpoint: {kept}. Try a lower --lr or --max-grad-norm."
            )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            log_ratio = (logps.detach() - take(rollout.logps)) * m
            metrics["policy/loss"] = float(policy_loss.detach())
            metrics["policy/clipfrac"] = float(masked_mean(clipped, m))
            metrics["policy/approx_kl"] = float(masked_mean(0.5 * log_ratio**2, m))
        metrics["grad_norm"] = grad_norm
        return metrics

    # -- held-out measurement ---------------------------------------------------------------------------
    @torch.no_grad()
    def measure(self) -> dict[str, float]:
        """Mean reward (with its 95% bootstrap interval), KL to the reference (k1 per response) and length
        on the held-out prompts."""
        rollout, _ = self.sample(self.eval_prompts, 1, seed=self.config.seed + 7919)
        self.score_tokens(rollout, with_values=False)
        scored = ~torch.isnan(rollout.scores)
        kl = (kl_k1(rollout.logps, rollout.ref_logps) * rollout.mask).sum(1)
        interval = bootstrap_mean(rollout.scores[scored].tolist())
        return {
            "eval/reward": interval.value,
            "eval/reward_low": interval.low,
            "eval/reward_high": interval.high,
            "eval/kl": float(kl.mean()),
            "eval/response_length": float(rollout.mask.sum(1).mean()),
            "eval/unscored": float((~scored).sum()),
        }

    # -- the loop ---------------------------------------------------------------------------------------
    def run(self) -> Path:
        config = self.config
        out = Path(config.out)
        metrics_path = out / "metrics.jsonl"
        if config.resume:
            self._resume(metrics_path)
        elif self.accelerator.is_main_process:
            metrics_path.unlink(missing_ok=True)
            (out / "rollouts.jsonl").unlink(missing_ok=True)
        if self.eval_prompts and self.state.step == 0:
            self._log(metrics_path, {"step": 0, **self.measure()})
        stopped = None
        progress = config.progress and self.accelerator.is_main_process
        with ProgressBar(config.steps, self.state.step, progress, label="rl", info=_summary) as bar:
            while self.state.step < config.steps:
                record = self.train_step()
                self.state.step += 1
                if self.eval_prompts and (self.state.step % config.eval_every == 0 or self.state.step == config.steps):
                    record.update(self.measure())
                if config.kl_stop is not None and record["kl"] > config.kl_stop:
                    stopped = f"KL {record['kl']:.3f} > --kl-stop {config.kl_stop} at step {self.state.step}"
                    record["stopped"] = 1.0
                    if self.eval_prompts and "eval/reward" not in record:
                        record.update(self.measure())
                self._log(metrics_path, record)
                bar.advance(record)
                if stopped or (config.save_every and self.state.step % config.save_every == 0):
                    self.save()
                if stopped:
                    break
        if self.console is not None and stopped and self.accelerator.is_main_process:
            self.console.print(f"[yellow]early stop[/]: {stopped}")
        return self.finish()

    def train_step(self) -> dict[str, float]:
        config = self.config
        started = time.perf_counter()
        prompts = self.step_prompts(self.state.step)
        rollout, expanded = self.sample(prompts, config.samples_per_prompt, seed=config.seed * 1000 + self.state.step)
        self.score_tokens(rollout, with_values=self.value is not None)
        compute_advantages(rollout, self.algorithm, beta=self.kl.beta, config=config)
        rollout_s = time.perf_counter() - started
        update = self.update(rollout)
        update_s = time.perf_counter() - started - rollout_s
        # Per-sample figures from every process, so that all processes log, adapt beta and stop alike.
        mask = rollout.mask
        per_sample = torch.stack(
            [
                rollout.scores,
                (kl_k1(rollout.logps, rollout.ref_logps) * mask).sum(1),
                token_kl(rollout, config.kl_estimator).sum(1),
                mask.sum(1),
                rollout.truncated.float(),
                (rollout.entropy * mask).sum(1),
            ],
            dim=1,
        )
        scores, kl, penalty, lengths, truncated, entropy = (
            self.accelerator.gather(per_sample.to(self.accelerator.device)).cpu().unbind(1)
        )
        scored = ~torch.isnan(scores)
        beta = self.kl.beta
        self.kl.update(float(kl.mean()), len(kl))
        record = {
            "step": self.state.step + 1,
            "reward": float(scores[scored].mean()) if scored.any() else math.nan,
            "reward/std": float(scores[scored].std()) if scored.sum() > 1 else 0.0,
            "kl": float(kl.mean()),
            "kl/penalty": float(beta * penalty.mean()),
            "kl/beta": beta,
            "response_length": float(lengths.mean()),
            "entropy": float(entropy.sum() / lengths.sum().clamp_min(1)),
            "truncated": float(truncated.mean()),
            "unscored": float((~scored).sum()),
            **update,
            "rollout_s": rollout_s,
            "update_s": update_s,
            "samples_per_s": len(kl) / (rollout_s + update_s),
        }
        self._write_rollouts(rollout, expanded)
        return record

    def _write_rollouts(self, rollout: Rollout, prompts: list[RLPrompt]) -> None:
        if not self.accelerator.is_main_process:
            return
        with (Path(self.config.out) / "rollouts.jsonl").open("a", encoding="utf-8") as handle:
            for i, prompt in enumerate(prompts):
                score = float(rollout.scores[i])
                row = {
                    "step": self.state.step,
                    "prompt": prompt.text,
                    "tag": prompt.tag,
                    "response": rollout.texts[i],
                    "reward": None if math.isnan(score) else score,
                    "truncated": bool(rollout.truncated[i]),
                }
                handle.write(dumps(row) + "\n")

    def _log(self, path: Path, record: dict[str, float]) -> None:
        if self.accelerator.is_main_process:
            with path.open("a") as handle:
                handle.write(dumps(record) + "\n")

    # -- checkpoints and the end ------------------------------------------------------------------------
    def save(self) -> Path:
        self.state.extra = {"kl": self.kl.state_dict()}
        return save_checkpoint(
            Path(self.config.out) / "checkpoints",
            model=self._trainables(),
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            state=self.state,
            rank=self.accelerator.process_index,
            is_main=self.accelerator.is_main_process,
            barrier=self.accelerator.wait_for_everyone,
            keep=self.config.keep_checkpoints,
        )

    def _resume(self, metrics_path: Path) -> None:
        _, self.state = resume_latest(
            Path(self.config.out) / "checkpoints",
            model=self._trainables(),
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            rank=self.accelerator.process_index,
            quiet=not self.accelerator.is_main_process,
        )
        self.kl.load_state_dict(self.state.extra["kl"])
        if self.accelerator.is_main_process:
            for name in ("metrics.jsonl", "rollouts.jsonl"):
                file = Path(self.config.out) / name
                if file.exists():
                    kept = [
                        line
                        for line in file.read_text().splitlines()
                        if line.strip() and json.loads(line)["step"] <= self.state.step - (name == "rollouts.jsonl")
                    ]
                    atomic_write_text(file, "".join(line + "\n" for line in kept))

    def finish(self) -> Path:
        out = Path(self.config.out)
        target = out / "model"
        self.save()
        if self.accelerator.is_main_process:
            target = save_final_model(out, self.unwrapped_policy, self.tokenizer)
            if self.value is not None:
                save_final_model(out, self.accelerator.unwrap_model(self.value), name="value_model")
            from tether.report.rl import write_rl_report

            write_rl_report(out, title=f"tether {type(self.config).command}: {out}")
        self.accelerator.wait_for_everyone()
        return target


def _summary(record: dict[str, float]) -> str:
    return f"reward {record['reward']:.3f}  kl {record['kl']:.3f}  {record['samples_per_s']:.2f} samples/s"


def run_online_rl(config: RLConfig, *, console: Any = None) -> Path:
    """Train with PPO, RLOO or GRPO (by the config's command); returns out/model."""
    return OnlineRL(config, console=console).run()
