"""`tether cai label`: AI preference labels with soft labels, position-bias averaged, audited and resumable.

Prompts, the constitution and the ``--agreement`` file are checked before any model loads. Per batch of
prompts the generator samples ``--samples`` responses per prompt (temperature > 0, sample i with seed + i);
response i is paired with response i + 1 (N responses, N - 1 pairs: every response is compared, each
comparison is independent, and the count grows linearly); a pair of identical responses (after
:func:`tether.cai.usable.normal`) or with an empty one makes no pair (counted). Each pair gets a principle
(prompt p's k-th pair uses the k-th principle of :func:`tether.cai.revise.principle_order` for ``seed`` and
p's id, so the choice never depends on batching or resuming) and is judged in both orders
(:mod:`tether.cai.label`).

The run folder (``--out``) holds ``run.json``, ``config.yaml``, ``labels.jsonl`` (one record per prompt,
appended batch by batch: its responses and every pair's judgement, both orders' probabilities and answers;
a prompt whose sampling or judge request failed carries ``error`` and is redone by ``--resume``), and, rebuilt
from every record at the end and written atomically:

- ``preferences.jsonl``: one Preference record per judged pair that is not a tie, ``chosen`` = the winner,
  ``p_chosen`` = the judge's probability that it is better (> 0.5; Bai et al. 2022's soft labels), ``source``
  ``cai-label:<prompt id>`` and ``meta`` (principle, both orders, judge, generator, constitution), for
  ``tether dpo --loss cdpo`` / ``--loss robust`` and ``tether rm train``, which use ``p_chosen``;
- ``agreement.jsonl`` (with ``--agreement``): the judgement of every labelled pair, its known-better response
  first (recomputed on every run);
- ``summary.json``: pairs, identical and empty ones skipped, unscored judgements by reason, ties, the
  position-bias rate (share of scored pairs where the judge picked the same letter in both orders) with a 95%
  bootstrap interval, the mean disagreement |p1 - p2| of the two orders, the mean p_chosen, per principle, and
  the agreement block: the share of labelled pairs with p(chosen) > 0.5 and the position-bias rate there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tether.atomic import atomic_write_json, atomic_write_jsonl
from tether.cai.batches import open_store, work_in_batches
from tether.cai.config import CaiLabelConfig
from tether.cai.constitution import Constitution, LoadedConstitution, load_constitution
from tether.cai.label import AnswerJudge, EndpointJudge, Judge, LocalJudge, judge_pairs
from tether.cai.prompts import CaiPrompt, read_cai_prompts
from tether.cai.revise import principle_order
from tether.cai.usable import normal
from tether.data.readers import read_records_with_report
from tether.data.records import Message, Preference, as_messages, parse_record
from tether.errors import DataError, TetherError
from tether.generation import SamplingParams
from tether.report.progress import steps
from tether.runs.folders import check_run_folder
from tether.stats import rate
from tether.targets import Target, make_target

KIND = "cai label"


@dataclass(frozen=True)
class LabelSettings:
    samples: int = 2
    max_new_tokens: int = 256
    temperature: float = 1.0
    seed: int = 0

    def params(self, sample: int) -> SamplingParams:
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=self.seed + sample)


def _generator(config: CaiLabelConfig) -> Target:
    return make_target(config, model=config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code)


def make_judge(config: CaiLabelConfig, generator: Any) -> Judge:
    """--judge-endpoint, --judge-model, or the generator itself (one model, loaded once): an endpoint is read
    from its log-probabilities or answer, a local model from its option log-likelihoods, a script from its answer."""
    from tether.targets import LocalTarget, OpenAITarget

    if config.judge_endpoint and config.judge_endpoint_model:
        target = OpenAITarget(
            config.judge_endpoint,
            config.judge_endpoint_model,
            api_key_env=config.judge_key_env,
            concurrency=config.concurrency,
            timeout=config.request_timeout,
            retries=config.retries,
        )
        return EndpointJudge(target, max_new_tokens=config.judge_max_new_tokens)
    if config.judge_model and not (config.judge_model == config.model and not config.endpoint):
        local = LocalTarget(config.judge_model, dtype=config.dtype, trust_remote_code=config.trust_remote_code)
        return LocalJudge(local, batch_size=config.judge_batch_size)
    if isinstance(generator, OpenAITarget):
        return EndpointJudge(generator, max_new_tokens=config.judge_max_new_tokens)
    if isinstance(generator, LocalTarget):
        return LocalJudge(generator, batch_size=config.judge_batch_size)
    return AnswerJudge(generator, max_new_tokens=config.judge_max_new_tokens)


def label_batch(
    prompts: Sequence[CaiPrompt],
    *,
    generator: Any,
    judge: Judge,
    constitution: Constitution,
    settings: LabelSettings,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One record per prompt, in order: ``id``, ``prompt``, ``prompt_source``, ``category``, ``responses``,
    ``pairs`` (each: ``first`` and ``second``, indices into responses, ``principle`` and the
    :func:`tether.cai.label.judgement` fields), ``identical`` and ``empty`` (pairs skipped), ``error``."""
    chats = [list(p.messages) for p in prompts]
    samples = [generator.generate(chats, settings.params(i)) for i in range(settings.samples)]
    records, items, owners = [], [], []
    for index, prompt in enumerate(prompts):
        replies = [sample[index] for sample in samples]
        errors = [f"sample {i}: {r.error}" for i, r in enumerate(replies) if r.error]
        record: dict[str, Any] = {
            "id": prompt.id,
            "prompt": [m.model_dump() for m in prompt.messages],
            "prompt_source": prompt.source,
            "category": prompt.category,
            "responses": [r.text.strip() for r in replies],
            "pairs": [],
            "identical": 0,
            "empty": 0,
            "error": errors[0] if errors else None,
            **(extra or {}),
        }
        records.append(record)
        if errors:
            continue
        order = principle_order(constitution.principles, settings.seed, prompt.id)
        texts = record["responses"]
        for k in range(len(texts) - 1):
            first, second = texts[k], texts[k + 1]
            if not first or not second:
                record["empty"] += 1
            elif normal(first) == normal(second):
                record["identical"] += 1
            else:
                principle = order[k % len(order)]
                record["pairs"].append({"first": k, "second": k + 1, "principle": principle.id})
                items.append((prompt.messages, principle, first, second))
                owners.append(record)
    judgements, failed = judge_pairs(judge, items)
    for record, verdict in zip(owners, judgements, strict=True):
        pair = next(p for p in record["pairs"] if "p_first" not in p)
        pair.update(verdict)
    if failed:  # a judge request failed: the prompt is redone by --resume
        for record in owners:
            bad = [p["unscored"] for p in record["pairs"] if p["unscored"] and "request failed" in p["unscored"]]
            if bad and record["error"] is None:
                record["error"] = f"judge: {bad[0]}"
    return records


def _completion_text(value: str | list[Message]) -> str:
    return "\n\n".join(m.content for m in as_messages(value, "assistant"))


def preference_rows(records: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """(Preference rows with ``p_chosen``, pairs not written by reason) from the labelled prompts."""
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for record in records:
        if record["error"]:
            skipped["failed prompt"] += len(record["pairs"])
            continue
        for pair in record["pairs"]:
            if pair["winner"] is None:
                skipped["unscored"] += 1
                continue
            if pair["winner"] == "tie":
                skipped["tie"] += 1
                continue
            first, second = record["responses"][pair["first"]], record["responses"][pair["second"]]
            chosen, rejected = (first, second) if pair["winner"] == "first" else (second, first)
            p_chosen = max(pair["p_first"], 1 - pair["p_first"])
            row = {
                "prompt": record["prompt"],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "p_chosen": p_chosen,
            }
            try:
                parse_record("preference", row)
            except DataError as err:
                skipped[f"preference: {err.message}"] += 1
                continue
            meta = {
                "prompt_source": record["prompt_source"],
                "principle": pair["principle"],
                "responses": [pair["first"], pair["second"]],
                "p_a": pair["p_a"],
                "position_biased": pair["position_biased"],
                **{k: record[k] for k in ("constitution", "constitution_sha256", "generator", "judge")},
            }
            rows.append({**row, "source": f"cai-label:{record['id']}", "meta": meta})
    return rows, skipped


def judgement_stats(judgements: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts and rates over judgements: scored, unscored by reason, ties, the position-bias rate and the mean
    disagreement of the two orders (both over scored pairs)."""
    scored = [j for j in judgements if j["winner"] is not None]
    reasons = Counter(str(j["unscored"]).split(": ", 1)[-1] for j in judgements if j["winner"] is None)
    disagreement = [j["disagreement"] for j in scored]
    return {
        "judged": len(judgements),
        "scored": len(scored),
        "unscored": len(judgements) - len(scored),
        "unscored_reasons": dict(reasons),
        "ties": sum(j["winner"] == "tie" for j in scored),
        "position_bias_rate": rate([bool(j["position_biased"]) for j in scored]).to_dict(),
        "mean_disagreement": sum(disagreement) / len(disagreement) if disagreement else None,
    }


def agreement_run(
    source: str,
    fmt: str,
    judge: Judge,
    constitution: Constitution,
    seed: int,
    batch_size: int,
    *,
    console: Any = None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The judge on labelled pairs (chosen known better), chosen shown first in order 1 and second in order 2:
    (one row per pair, the block for summary.json). Agreement = share of scored pairs with p(chosen) > 0.5."""
    records, report = read_records_with_report(source, "preference", fmt)
    items: list[tuple[Any, ...]] = []
    rows: list[dict[str, Any]] = []
    for record, line in zip(records, report.lines, strict=True):
        assert isinstance(record, Preference)
        principle = principle_order(constitution.principles, seed, f"agreement:{line}")[0]
        chosen, rejected = _completion_text(record.chosen), _completion_text(record.rejected)
        items.append((tuple(as_messages(record.prompt, "user")), principle, chosen, rejected))
        rows.append({"line": line, "principle": principle.id, "p_first": None})
    with steps(console, "cai label: agreement", len(items), enabled=progress and console is not None) as bar:
        for start in range(0, len(items), batch_size):
            verdicts, _ = judge_pairs(judge, items[start : start + batch_size])
            for row, verdict in zip(rows[start : start + batch_size], verdicts, strict=True):
                row.update(verdict)
            bar.advance(len(verdicts))
    stats = judgement_stats(rows)
    agree = [row["p_first"] > 0.5 for row in rows if row["p_first"] is not None]
    return rows, {"file": source, "pairs": len(rows), "agreement": rate(agree).to_dict(), **stats}


def summarize_labels(records: Sequence[dict[str, Any]], preferences: Sequence[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in records if not r["error"]]
    judgements = [p for r in done for p in r["pairs"]]
    by_principle: dict[str, dict[str, int]] = {}
    for pair in judgements:
        block = by_principle.setdefault(pair["principle"], {"pairs": 0, "scored": 0, "position_biased": 0})
        block["pairs"] += 1
        block["scored"] += pair["winner"] is not None
        block["position_biased"] += bool(pair["position_biased"])
    p_chosen = [row["p_chosen"] for row in preferences]
    return {
        "prompts": len(records),
        "prompts_failed": len(records) - len(done),
        "failed_at": dict(Counter(str(r["error"]).split(":", 1)[0] for r in records if r["error"])),
        "responses": sum(len(r["responses"]) for r in done),
        "identical_skipped": sum(r["identical"] for r in done),
        "empty_skipped": sum(r["empty"] for r in done),
        **judgement_stats(judgements),
        "preference_pairs": len(preferences),
        "mean_p_chosen": sum(p_chosen) / len(p_chosen) if p_chosen else None,
        "by_principle": dict(sorted(by_principle.items())),
    }


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title="cai label")
    table.add_column("count")
    table.add_column("value", justify="right")
    bias = summary["position_bias_rate"]
    rows = [
        ("prompts", summary["prompts"]),
        ("failed prompts (--resume redoes them)", summary["prompts_failed"]),
        ("pairs judged (both orders)", summary["judged"]),
        ("identical responses (no pair)", summary["identical_skipped"]),
        ("unscored judgements", summary["unscored"]),
        ("ties (not written)", summary["ties"]),
        (
            "position-bias rate",
            "-" if bias["n"] == 0 else f"{bias['value']:.1%} [{bias['low']:.1%}, {bias['high']:.1%}]",
        ),
        ("preference pairs", summary["preference_pairs"]),
    ]
    if summary.get("agreement"):
        agree = summary["agreement"]["agreement"]
        rows.append(
            ("agreement with --agreement", "-" if agree["n"] == 0 else f"{agree['value']:.1%} (n={agree['n']})")
        )
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)


def run_label(
    config: CaiLabelConfig, *, console: Console | None = None, generator: Any = None, judge: Judge | None = None
) -> dict[str, Any]:
    """Run `tether cai label`; ``generator`` and ``judge`` replace the configured ones (tests)."""
    console = console or Console()
    prompts = read_cai_prompts(config.prompts, config.prompts_format, limit=config.limit)
    loaded: LoadedConstitution = load_constitution(config.constitution)
    if config.agreement:
        read_records_with_report(config.agreement, "preference", config.agreement_format)  # file:line errors now
    check_run_folder(config.out, KIND, resume=config.resume, overwrite=config.overwrite)
    generator = generator or _generator(config)
    judge = judge or make_judge(config, generator)
    constitution = loaded.constitution
    settings = LabelSettings(config.samples, config.max_new_tokens, config.temperature, config.seed)
    provenance = {
        "constitution": constitution.name,
        "constitution_sha256": loaded.sha256,
        "generator": generator.name,
        "judge": judge.name,
    }
    identity = {"command": KIND, "prompts": str(config.prompts), **provenance, **vars(settings)}
    store = open_store(
        config, KIND, identity, out=config.out, name="labels.jsonl", resume=config.resume, overwrite=config.overwrite
    )
    done = sum(store.done(p.id) for p in prompts)
    console.print(
        f"[bold]cai label[/]: {len(prompts)} prompts ({done} done), {config.samples} samples each, "
        f"constitution {constitution.name} ({len(constitution.principles)} principles), generator {generator.name}, "
        f"judge {judge.name}",
        highlight=False,
    )

    def work(batch: list[CaiPrompt]) -> list[dict[str, Any]]:
        return label_batch(
            batch, generator=generator, judge=judge, constitution=constitution, settings=settings, extra=provenance
        )

    records = work_in_batches(
        store, prompts, work, batch_size=config.batch_size, console=console, label=KIND, progress=config.progress
    )
    preferences, skipped = preference_rows(records)
    atomic_write_jsonl(config.out / "preferences.jsonl", preferences)
    summary = {**summarize_labels(records, preferences), "pairs_not_written": dict(skipped), "agreement": None}
    if config.agreement:
        rows, summary["agreement"] = agreement_run(
            config.agreement,
            config.agreement_format,
            judge,
            constitution,
            config.seed,
            config.batch_size,
            console=console,
            progress=config.progress,
        )
        atomic_write_jsonl(config.out / "agreement.jsonl", rows)
    summary["constitution"] = {"name": constitution.name, "path": str(loaded.path), "sha256": loaded.sha256}
    summary["identity"] = identity
    atomic_write_json(config.out / "summary.json", summary)
    _print_summary(console, summary)
    console.print(f"labels: {store.path}  preferences: {Path(config.out) / 'preferences.jsonl'}")
    failed = [r for r in records if r["error"]]
    if failed and len(failed) == len(records):
        raise TetherError(f"every prompt failed; the first: {failed[0]['error'][:300]}. --resume redoes them")
    if failed:
        console.print(
            f"[yellow]note[/]: {len(failed)} prompts failed (first: {failed[0]['error'][:200]}); --resume redoes them"
        )
    return summary
