"""Each source's training signal for one iteration: preference rows, the file they came from, and counts.

A source that asks the model (red-team, CAI, keep-helping) asks the iteration's *starting* model and keeps its
own run folder under ``iter-NNN/sources/<name>/`` (a `tether redteam` or `tether cai` run: its report,
samples and chains are there to audit, and an interrupted iteration resumes inside it). A file or guard store
is read as it is; rows already trained on in an earlier iteration are dropped when merging
(:mod:`tether.loop.merge`), so a fixed file trains once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from tether.atomic import atomic_write_json, atomic_write_jsonl
from tether.data.readers import iter_rows, read_records_with_report
from tether.judges.refusal_patterns import is_refusal
from tether.loop.config import (
    CaiLabelSource,
    CaiReviseSource,
    GuardReviewSource,
    KeepHelpingSource,
    LoopConfig,
    PreferenceFileSource,
    RedteamSource,
    Source,
)
from tether.redteam.campaign import SAFE_REFUSALS

WRITTEN_REFUSALS = (
    *SAFE_REFUSALS,
    "I'm sorry, but I can't help with that.",
    "I can't help with that request.",
)
"""Rejected answers for a safe prompt the model never refused (keep-helping): the refusals red-team and guard
exports choose for harmful prompts among them, so a model cannot learn "this refusal wording is good" without
reading the prompt (a demo run whose keep-helping refusals were worded otherwise learnt exactly that)."""


@dataclass
class Gathered:
    rows: list[tuple[str, int, dict[str, Any]]]
    """(file, line, preference row as the source wrote it)."""
    counts: dict[str, Any] = field(default_factory=dict)
    """What the source reports about itself (attempts, unusable critiques, fallbacks ...)."""


@dataclass(frozen=True)
class Iteration:
    """What a source needs to know of the iteration it feeds."""

    number: int
    model: str
    folder: Path
    """``iter-NNN/sources/<name>``."""
    config: LoopConfig
    console: Console

    @property
    def seed(self) -> int:
        return self.config.seed + self.number


def check_source(source: Source) -> None:
    """Read every file a source names (prompts, preference file, constitution): file:line errors, no model."""
    if isinstance(source, PreferenceFileSource):
        read_records_with_report(source.path, "preference")
    elif isinstance(source, RedteamSource):
        from tether.data.benchmarks import read_harmful_prompts

        read_harmful_prompts(source.prompts)
    elif isinstance(source, CaiReviseSource | CaiLabelSource | KeepHelpingSource):
        helper = getattr(source, "critic_model", None) or getattr(source, "judge_model", None)
        if helper:
            from tether.models.loading import check_weights

            check_weights(helper)
        from tether.cai.prompts import read_cai_prompts

        prompts = read_cai_prompts(source.prompts)
        if not isinstance(source, KeepHelpingSource):
            from tether.cai.constitution import load_constitution

            load_constitution(source.constitution)
        if isinstance(source, CaiReviseSource) and source.fallback_field:
            _fallbacks(source, prompts)
    elif isinstance(source, GuardReviewSource):
        from tether.guard.store import open_store

        open_store(source.database, migrate_schema=False)


def _read_rows(path: Path, limit: int | None = None) -> list[tuple[str, int, dict[str, Any]]]:
    rows = [(str(path), line, row) for line, row in iter_rows(path)] if path.exists() and path.stat().st_size else []
    return rows[:limit] if limit else rows


def _preferences(source: PreferenceFileSource, it: Iteration) -> Gathered:
    return Gathered(_read_rows(Path(source.path), source.limit))


def _redteam(source: RedteamSource, it: Iteration) -> Gathered:
    from tether.config import RedteamConfig
    from tether.redteam.run import run_redteam

    pairs = it.folder / "pairs.jsonl"
    if not (pairs.exists() and (it.folder / "summary.json").exists()):
        config = RedteamConfig(
            model=it.model,
            data=source.prompts,
            out=it.folder,
            attacks=source.attacks,
            success=source.success,
            judge=it.config.judge,
            export_pairs=pairs,
            limit=source.limit,
            max_new_tokens=it.config.max_new_tokens,
            batch_size=it.config.batch_size,
            seed=it.seed,
            generation_backend=it.config.generation_backend,
            resume=it.folder.exists(),
            progress=it.config.progress,
        )
        run_redteam(config, console=it.console)
    summary = json.loads((it.folder / "summary.json").read_text())
    success = summary["overall"]["attack_success"]
    rows = _read_rows(pairs)
    if source.refusal_field:  # written beside the export, so every row's file:line holds it as trained
        rewritten = it.folder / "pairs-written-refusals.jsonl"
        atomic_write_jsonl(
            rewritten, [row for _, _, row in _written_refusals(source, rows, it.folder / "samples.jsonl")]
        )
        rows = _read_rows(rewritten)
    return Gathered(
        rows,
        {"attempts": summary["attempts"], "attack_success": success.get("value"), "scored": success.get("n")},
    )


def _written_refusals(
    source: RedteamSource, rows: list[tuple[str, int, dict[str, Any]]], attempts: Path
) -> list[tuple[str, int, dict[str, Any]]]:
    """The exported pairs with each chosen refusal replaced by its request's written one, where it has one."""
    by_line = {line: row for line, row in iter_rows(source.prompts)}
    written: dict[str, str] = {}
    for _, attempt in iter_rows(attempts):
        line = int(str(attempt["source"]).rsplit(":", 1)[1])
        value = by_line.get(line, {}).get(source.refusal_field or "")
        if isinstance(value, str) and value.strip():
            written[f"redteam:{attempt['id']}"] = value
    out = []
    for file, line, row in rows:
        if row.get("source") in written:
            row = {**row, "chosen": [{"role": "assistant", "content": written[row["source"]]}]}
        out.append((file, line, row))
    return out


def _fallbacks(source: CaiReviseSource, prompts: list[Any]) -> dict[str, str]:
    """Prompt id -> its written fallback answer (``fallback_field`` of its row, where the row has one)."""
    path = Path(source.prompts)
    by_line = {line: row for line, row in iter_rows(path)}
    out: dict[str, str] = {}
    for prompt in prompts:
        line = int(prompt.source.rsplit(":", 1)[1])
        value = by_line.get(line, {}).get(source.fallback_field or "")
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            from tether.errors import DataError

            raise DataError("expected a non-empty text", file=str(path), line=line, field=source.fallback_field)
        out[prompt.id] = value
    return out


def _cai_run_fields(source: CaiReviseSource | CaiLabelSource, it: Iteration) -> dict[str, Any]:
    """The settings `cai revise` and `cai label` take from the source and the iteration alike."""
    return {
        "model": it.model,
        "prompts": source.prompts,
        "constitution": source.constitution,
        "out": it.folder,
        "max_new_tokens": it.config.max_new_tokens,
        "limit": source.limit,
        "batch_size": it.config.batch_size,
        "seed": it.seed,
        "generation_backend": it.config.generation_backend,
        "resume": it.folder.exists(),
        "progress": it.config.progress,
    }


def _run_once(it: Iteration, run: Callable[[], object]) -> dict[str, Any]:
    """Run a `cai` command into the source's folder unless it finished there; its ``summary.json``."""
    if not (it.folder / "summary.json").exists():
        run()
    return json.loads((it.folder / "summary.json").read_text())


def _cai_revise(source: CaiReviseSource, it: Iteration) -> Gathered:
    from tether.cai.config import CaiReviseConfig
    from tether.cai.prompts import read_cai_prompts
    from tether.cai.run import run_revise

    config = CaiReviseConfig(
        **_cai_run_fields(source, it),
        rounds=source.rounds,
        critic_model=source.critic_model,
        critic_endpoint=source.critic_endpoint,
        critic_endpoint_model=source.critic_endpoint_model,
        critique_max_new_tokens=source.critique_max_new_tokens,
    )
    summary = _run_once(it, lambda: run_revise(config, console=it.console))
    counts = {
        "prompts": summary["prompts"],
        "rounds": summary["rounds"],
        "revisions_usable": summary["revisions_usable"],
        "critiques_unusable": sum(v for k, v in summary["unusable"].items() if k.startswith("critique_")),
        "revisions_unusable": sum(v for k, v in summary["unusable"].items() if not k.startswith("critique_")),
        "unusable": {k: v for k, v in summary["unusable"].items() if v},
        "final_from_revision": summary["final_from_revision"],
    }
    pairs = it.folder / "preferences.jsonl"
    rows = _read_rows(pairs)
    if source.fallback_field:
        written = it.folder / "fallback.jsonl"
        fallback = _fallback_rows(source, it.folder / "chains.jsonl", read_cai_prompts(source.prompts))
        atomic_write_jsonl(written, fallback)
        counts["fallback_pairs"] = len(fallback)
        rows += _read_rows(written)
    return Gathered(rows, counts)


def _fallback_rows(source: CaiReviseSource, chains_file: Path, prompts: list[Any]) -> list[dict[str, Any]]:
    """The written answer over the response, for each finished chain with no usable revision whose response
    the phrase matcher does not take for a refusal."""
    written = _fallbacks(source, prompts)
    rows = []
    for _, chain in iter_rows(chains_file):
        answer = written.get(chain["id"])
        if answer is None or chain["error"] or chain["final_from"] != 0:
            continue
        response = chain["response"]
        if not response.strip() or is_refusal(response) or response.strip() == answer.strip():
            continue
        rows.append(
            {
                "prompt": chain["prompt"],
                "chosen": [{"role": "assistant", "content": answer}],
                "rejected": [{"role": "assistant", "content": response}],
                "source": f"cai-revise-fallback:{chain['id']}",
            }
        )
    return rows


def _cai_label(source: CaiLabelSource, it: Iteration) -> Gathered:
    from tether.cai.config import CaiLabelConfig
    from tether.cai.label_run import run_label

    config = CaiLabelConfig(
        **_cai_run_fields(source, it),
        samples=source.samples,
        judge_model=source.judge_model,
        judge_endpoint=source.judge_endpoint,
        judge_endpoint_model=source.judge_endpoint_model,
    )
    summary = _run_once(it, lambda: run_label(config, console=it.console))
    bias = summary.get("position_bias") or {}
    counts = {
        "pairs_judged": summary.get("pairs"),
        "ties": summary.get("ties"),
        "unscored": summary.get("unscored"),
        "position_bias": bias.get("value"),
    }
    pairs = it.folder / "preferences.jsonl"
    return Gathered(_read_rows(pairs), counts)


def _guard(source: GuardReviewSource, it: Iteration) -> Gathered:
    from tether.guard.feedback import records_from_reviews
    from tether.guard.store import open_store

    pairs = it.folder / "preferences.jsonl"
    if not pairs.exists():
        preferences, _, _, reviews = records_from_reviews(open_store(source.database).reviewed())
        it.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(it.folder / "counts.json", dict(reviews))
        atomic_write_jsonl(pairs, preferences[: source.limit] if source.limit else preferences)
    counts = {"reviews": json.loads((it.folder / "counts.json").read_text())}
    return Gathered(_read_rows(pairs), counts)


def keep_helping_pairs(prompt: Any, answers: Sequence[str], salt: int) -> list[dict[str, Any]]:
    """Each answer that is not a refusal (phrase matcher), chosen over a refusal: the model's own first one
    among ``answers``, else a written one."""
    answers = [a for a in answers if a.strip()]
    refusals = [a for a in answers if is_refusal(a)]
    rejected = refusals[0] if refusals else WRITTEN_REFUSALS[salt % len(WRITTEN_REFUSALS)]
    prompt_messages = [m.model_dump() for m in prompt.messages]
    return [
        {
            "prompt": prompt_messages,
            "chosen": [{"role": "assistant", "content": a}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "source": f"keep-helping:{prompt.id}",
        }
        for a in dict.fromkeys(answers)
        if a not in refusals
    ]


def _keep_helping(source: KeepHelpingSource, it: Iteration) -> Gathered:
    from tether.cai.prompts import read_cai_prompts
    from tether.generation import SamplingParams
    from tether.targets import LocalTarget

    pairs = it.folder / "pairs.jsonl"
    samples_file = it.folder / "samples.jsonl"
    prompts = read_cai_prompts(source.prompts, limit=source.limit)
    if not pairs.exists():
        target = LocalTarget(
            it.model, backend=it.config.generation_backend, batch_size=it.config.batch_size, progress=it.config.progress
        )
        params = SamplingParams(max_new_tokens=it.config.max_new_tokens, temperature=source.temperature, seed=it.seed)
        chats = [list(p.messages) for p in prompts for _ in range(source.samples)]
        replies = target.generate(chats, params)
        samples = [
            {"id": p.id, "answers": [r.text for r in replies[i * source.samples : (i + 1) * source.samples]]}
            for i, p in enumerate(prompts)
        ]
        it.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_jsonl(samples_file, samples)
        rows = [
            row
            for i, (p, s) in enumerate(zip(prompts, samples, strict=True))
            for row in keep_helping_pairs(p, s["answers"], i)
        ]
        atomic_write_jsonl(pairs, rows)
    answers = [a for _, s in iter_rows(samples_file) for a in s["answers"]]
    counts = {"answers": len(answers), "refusals": sum(is_refusal(a) for a in answers)}
    return Gathered(_read_rows(pairs), counts)


GATHER: dict[type, Callable[[Any, Iteration], Gathered]] = {
    PreferenceFileSource: _preferences,
    RedteamSource: _redteam,
    CaiReviseSource: _cai_revise,
    CaiLabelSource: _cai_label,
    GuardReviewSource: _guard,
    KeepHelpingSource: _keep_helping,
}


def gather(source: Source, it: Iteration) -> Gathered:
    return GATHER[type(source)](source, it)
