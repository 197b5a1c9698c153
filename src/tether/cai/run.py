"""`tether cai revise`: prompts and constitution checked before any model loads, chains batch by batch, outputs.

The run folder (``--out``) holds ``run.json`` (what was run; a resume with other settings is refused),
``config.yaml`` (the resolved config), ``chains.jsonl`` (one chain per prompt, appended batch by batch:
:func:`tether.cai.revise.revise_batch` describes a record), and, rebuilt from every chain at the end and
written atomically:

- ``sft.jsonl``: ``messages`` = the prompt and the final revision, for ``tether sft``;
- ``preferences.jsonl``: ``prompt``, ``chosen`` = the final revision, ``rejected`` = the original response,
  for ``tether dpo``;

both only for prompts with a usable revision (a chain without one keeps the original as its ``final``, but
an unrevised answer, perhaps to a harmful request, is no training target; ``summary.json`` counts them), and
``summary.json``: prompts, rounds, usable revisions, unusable ones by reason, per principle.

Every output row carries ``source`` (``cai-revise:<prompt id>``) and ``meta``: the prompt's file:line, the
principles of its rounds and of its usable revisions, the constitution's name and sha256, generator and critic.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tether.atomic import atomic_write_json, atomic_write_jsonl
from tether.cai.batches import open_store, work_in_batches
from tether.cai.config import CaiReviseConfig
from tether.cai.constitution import LoadedConstitution, load_constitution
from tether.cai.prompts import CaiPrompt, read_cai_prompts
from tether.cai.revise import ReviseSettings, revise_batch
from tether.cai.usable import CRITIQUE_REASONS, REVISION_REASONS, normal
from tether.data.records import parse_record
from tether.errors import DataError, TetherError
from tether.runs.folders import check_run_folder
from tether.targets import Target, make_target

KIND = "cai revise"


def _generator(config: CaiReviseConfig) -> Target:
    return make_target(config, model=config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code)


def _critic(config: CaiReviseConfig, generator: Any) -> Any:
    """The critic: --critic-endpoint, --critic-model, or the generator itself (one model, loaded once)."""
    from tether.targets import LocalTarget, OpenAITarget

    if config.critic_endpoint and config.critic_endpoint_model:
        return OpenAITarget(
            config.critic_endpoint,
            config.critic_endpoint_model,
            api_key_env=config.critic_key_env,
            concurrency=config.concurrency,
            timeout=config.request_timeout,
            retries=config.retries,
        )
    if config.critic_model and not (config.critic_model == config.model and not config.endpoint):
        return LocalTarget(
            config.critic_model,
            backend=config.generation_backend,
            dtype=config.dtype,
            trust_remote_code=config.trust_remote_code,
        )
    return generator


def _meta(chain: dict[str, Any]) -> dict[str, Any]:
    rounds = chain["rounds"]
    return {
        "prompt_source": chain["prompt_source"],
        "final_from": chain["final_from"],
        "principles": [r["principle"] for r in rounds],
        "revised_by": [r["principle"] for r in rounds if r.get("usable")],
        **{key: chain[key] for key in ("constitution", "constitution_sha256", "generator", "critic")},
    }


def dataset_rows(chains: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Counter[str]]:
    """(SFT rows, preference rows, rows skipped by reason) from finished chains, each row checked as the
    record `tether sft` / `tether dpo` reads."""
    sft: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for chain in chains:
        if chain["error"]:
            skipped["failed chain"] += 1
            continue
        if chain["final_from"] == 0:  # the unrevised answer (to a harmful request, perhaps) is no training target
            skipped["no usable revision"] += 1
            continue
        provenance = {"source": f"cai-revise:{chain['id']}", "meta": _meta(chain)}
        final = [{"role": "assistant", "content": chain["final"]}]
        try:
            parse_record("conversation", {"messages": [*chain["prompt"], *final]})
            sft.append({"messages": [*chain["prompt"], *final], **provenance})
        except DataError as err:
            skipped[f"sft: {err.message}"] += 1
        if normal(chain["final"]) == normal(chain["response"]):
            continue
        if not chain["response"].strip():
            skipped["preference: empty original response"] += 1
            continue
        pair = {
            "prompt": chain["prompt"],
            "chosen": final,
            "rejected": [{"role": "assistant", "content": chain["response"]}],
        }
        try:
            parse_record("preference", pair)
            pairs.append({**pair, **provenance})
        except DataError as err:
            skipped[f"preference: {err.message}"] += 1
    return sft, pairs, skipped


def summarize_chains(chains: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over chains: prompts, failed chains, rounds, usable revisions, unusable rounds by reason."""
    done = [c for c in chains if not c["error"]]
    rounds = [r for c in done for r in c["rounds"]]
    reasons = Counter(r["reason"] for r in rounds if r["reason"])
    by_principle: dict[str, dict[str, int]] = {}
    for r in rounds:
        block = by_principle.setdefault(r["principle"], {"rounds": 0, "usable": 0})
        block["rounds"] += 1
        block["usable"] += bool(r["usable"])
    errors = Counter(str(c["error"]).split(":", 1)[0] for c in chains if c["error"])
    return {
        "prompts": len(chains),
        "chains_done": len(done),
        "chains_failed": len(chains) - len(done),
        "failed_at": dict(errors),
        "rounds": len(rounds),
        "revisions_usable": sum(bool(r["usable"]) for r in rounds),
        "unusable": {reason: reasons.get(reason, 0) for reason in (*CRITIQUE_REASONS, *REVISION_REASONS)},
        "final_from_revision": sum(c["final_from"] > 0 for c in done),
        "final_from_original": sum(c["final_from"] == 0 for c in done),
        "by_principle": dict(sorted(by_principle.items())),
    }


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title="cai revise")
    table.add_column("count")
    table.add_column("n", justify="right")
    rows = [
        ("prompts", summary["prompts"]),
        ("failed chains (--resume redoes them)", summary["chains_failed"]),
        ("rounds", summary["rounds"]),
        ("usable revisions", summary["revisions_usable"]),
        *((f"unusable: {reason}", n) for reason, n in summary["unusable"].items() if n),
        ("final answer is a revision", summary["final_from_revision"]),
        ("SFT rows", summary["sft_rows"]),
        ("preference pairs", summary["preference_pairs"]),
    ]
    for name, n in rows:
        table.add_row(name, str(n))
    console.print(table)


def run_revise(
    config: CaiReviseConfig, *, console: Console | None = None, generator: Any = None, critic: Any = None
) -> dict[str, Any]:
    """Run `tether cai revise`; ``generator`` and ``critic`` replace the configured targets (tests)."""
    console = console or Console()
    prompts = read_cai_prompts(config.prompts, config.prompts_format, limit=config.limit)
    loaded: LoadedConstitution = load_constitution(config.constitution)
    check_run_folder(config.out, KIND, resume=config.resume, overwrite=config.overwrite)
    generator = generator or _generator(config)
    critic = critic or _critic(config, generator)
    constitution = loaded.constitution
    settings = ReviseSettings(
        rounds=config.rounds,
        max_new_tokens=config.max_new_tokens,
        critique_max_new_tokens=config.critique_max_new_tokens,
        temperature=config.temperature,
        seed=config.seed,
        max_growth=config.max_growth,
    )
    provenance = {
        "constitution": constitution.name,
        "constitution_sha256": loaded.sha256,
        "generator": generator.name,
        "critic": critic.name,
    }
    identity = {
        "command": KIND,
        "prompts": str(config.prompts),
        **provenance,
        **vars(settings),
    }
    store = open_store(
        config, KIND, identity, out=config.out, name="chains.jsonl", resume=config.resume, overwrite=config.overwrite
    )
    done = sum(store.done(p.id) for p in prompts)
    console.print(
        f"[bold]cai revise[/]: {len(prompts)} prompts ({done} done), {config.rounds} rounds, "
        f"constitution {constitution.name} ({len(constitution.principles)} principles), generator {generator.name}, "
        f"critic {critic.name}",
        highlight=False,
    )

    def work(batch: list[CaiPrompt]) -> list[dict[str, Any]]:
        return revise_batch(
            batch, generator=generator, critic=critic, constitution=constitution, settings=settings, extra=provenance
        )

    chains = work_in_batches(
        store, prompts, work, batch_size=config.batch_size, console=console, label=KIND, progress=config.progress
    )
    sft, pairs, skipped = dataset_rows(chains)
    atomic_write_jsonl(config.out / "sft.jsonl", sft)
    atomic_write_jsonl(config.out / "preferences.jsonl", pairs)
    summary = {
        **summarize_chains(chains),
        "sft_rows": len(sft),
        "preference_pairs": len(pairs),
        "rows_skipped": dict(skipped),
        "constitution": {"name": constitution.name, "path": str(loaded.path), "sha256": loaded.sha256},
        "identity": identity,
    }
    atomic_write_json(config.out / "summary.json", summary)
    _print_summary(console, summary)
    out = Path(config.out)
    console.print(f"chains: {store.path}  sft: {out / 'sft.jsonl'}  preferences: {out / 'preferences.jsonl'}")
    failed = [c for c in chains if c["error"]]
    if failed and len(failed) == len(chains):
        raise TetherError(f"every chain failed; the first: {failed[0]['error'][:300]}. --resume redoes them")
    if failed:
        console.print(
            f"[yellow]note[/]: {len(failed)} chains failed (first: {failed[0]['error'][:200]}); --resume redoes them"
        )
    return summary
