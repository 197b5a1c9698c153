"""The refusal direction: Arditi et al. 2024, "Refusal in language models is mediated by a single direction".

`tether interp refusal-direction` as in their code (github.com/andyrdt/refusal_direction), in stages whose
outputs a resumed run reuses; the direction's own operations (edits, scores, orthogonalisation, its file) are
in :mod:`tether.interp.direction`:

- **candidates** ``r_{i,l} = mu_harmful(i, l) - mu_harmless(i, l)``: mean residual stream ``resid_pre.l`` at
  each post-instruction position ``i`` (the tokens the chat template writes after the instruction) and layer
  ``l`` over training instructions (kept only where the model already behaves as expected, refusal score > 0
  on harmful and < 0 on harmless, when ``filter_train``);
- **selection** on held-out instructions: the candidate with the lowest *bypass score* (mean refusal score on
  harmful instructions under ablation) among those whose *induce score* (mean refusal score on harmless
  instructions under addition) is above 0, whose KL divergence ``KL(p_base || p_ablated)`` of the harmless
  next-token distributions is below 0.1, and whose layer is below 0.8 L;
- **evaluation**: refusal rates of baseline, ablation and addition on other held-out instructions (judged by
  tether's refusal judge), the loss change on harmless text, and the weight-orthogonalised checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tether.errors import UsageError
from tether.interp.direction import (
    ablation_edits,
    addition_edits,
    completion_nll,
    kl_divergence,
    mean_difference,
    refusal_rates,
    refusal_scores,
    refusal_token_ids,
    save_direction,
    save_orthogonalized,
)
from tether.interp.hooks import Edit
from tether.interp.sites import Site, layer_count
from tether.report.plots import heatmap

RUN_KIND = "interp refusal-direction"
CONDITIONS = ("baseline", "ablation", "addition")
SETS = ("harmful", "harmless")


# -- `tether interp refusal-direction` -------------------------------------------------------------------------


def _candidate_stage(out: Path, model: Any, tokenizer: Any, train: dict[str, list[str]], config: Any, console: Any):
    """Mean differences ``[positions, layers, d]`` (out/mean_diffs.safetensors, reused for the same inputs) and
    the training sets' kept counts."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from tether.atomic import atomic_path
    from tether.interp.activations import fingerprint, forward, instruction_ids, pad_id_of, post_instruction_ids

    tail = post_instruction_ids(tokenizer)
    positions = min(config.positions or len(tail), len(tail))
    refusal_ids = refusal_token_ids(tokenizer, config.refusal_tokens)
    identity = {
        "model": config.model,
        "revision": config.revision,
        "positions": positions,
        "refusal_ids": refusal_ids,
        "filter_train": config.filter_train,
        **{name: fingerprint(texts) for name, texts in train.items()},
    }
    path = out / "mean_diffs.safetensors"
    if path.is_file():
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            if json.loads(header.get("identity", "null")) == identity:
                console.print(f"candidates: reusing {path}", highlight=False)
                return handle.get_tensor("mean_diffs"), json.loads(header["kept"])
    sites = [Site("resid_pre", layer) for layer in range(layer_count(model))]
    acts, kept = {}, {}
    for name, texts in train.items():
        found = forward(
            model,
            instruction_ids(tokenizer, texts),
            pad_id=pad_id_of(tokenizer),
            sites=sites,
            last=positions,
            logits=True,
            batch_size=config.batch_size,
            console=console if config.progress else None,
            label=f"activations ({name} train)",
        )
        assert found.logits is not None
        scores = refusal_scores(found.logits, refusal_ids)
        keep = scores > 0 if name == "harmful" else scores < 0
        filtered = config.filter_train and int(keep.sum()) >= 2
        if not filtered:
            keep = torch.ones_like(keep)
        acts[name] = {s: a[keep] for s, a in found.activations.items()}
        kept[name] = {
            "n": len(texts),
            "kept": int(keep.sum()),
            "filtered": filtered,  # False: filter off, or it would have kept fewer than 2 (all are used)
            "mean_refusal_score": float(scores.mean()),
        }
    diffs = mean_difference(acts["harmful"], acts["harmless"])
    with atomic_path(path) as tmp:
        save_file(
            {"mean_diffs": diffs}, str(tmp), metadata={"identity": json.dumps(identity), "kept": json.dumps(kept)}
        )
    return diffs, kept


def _selection_stage(
    out: Path,
    model: Any,
    tokenizer: Any,
    diffs: torch.Tensor,
    selection: dict[str, list[str]],
    config: Any,
    console: Any,
) -> dict[str, Any]:
    """Every candidate's bypass, induce and KL scores (out/candidates.json, saved after each candidate and
    continued on --resume) and the chosen one."""
    from tether.atomic import atomic_write_json
    from tether.interp.activations import fingerprint, forward, instruction_ids, pad_id_of
    from tether.report.progress import steps

    pad = pad_id_of(tokenizer)
    refusal_ids = refusal_token_ids(tokenizer, config.refusal_tokens)
    rows = {name: instruction_ids(tokenizer, texts) for name, texts in selection.items()}
    layers = layer_count(model)
    positions = diffs.shape[0]
    max_layer = config.max_layer_fraction * layers
    identity = {
        "mean_diffs": float(diffs.double().abs().sum()),
        "refusal_ids": refusal_ids,
        **{name: fingerprint(texts) for name, texts in selection.items()},
    }
    path = out / "candidates.json"
    state: dict[str, Any] = {}
    if path.is_file():
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("identity") != identity:
            state = {}

    def logits(name: str, edits: Sequence[tuple[Site, Edit]] = ()) -> torch.Tensor:
        found = forward(model, rows[name], pad_id=pad, logits=True, edits=edits, batch_size=config.batch_size)
        assert found.logits is not None
        return found.logits

    base_harmless = logits("harmless")
    if not state:
        base_harmful = logits("harmful")
        state = {
            "identity": identity,
            "refusal_tokens": config.refusal_tokens,
            "refusal_token_ids": refusal_ids,
            "baseline": {
                "harmful_refusal_score": float(refusal_scores(base_harmful, refusal_ids).mean()),
                "harmless_refusal_score": float(refusal_scores(base_harmless, refusal_ids).mean()),
            },
            "candidates": [],
        }
    done = {(c["position"], c["layer"]) for c in state["candidates"]}
    todo = [
        (position, layer)
        for position in range(-positions, 0)
        for layer in range(0, layers, config.layer_stride)
        if layer < max_layer and (position, layer) not in done
    ]
    console.print(
        f"selection: {len(done) + len(todo)} candidates ({len(done)} done) at positions -{positions}..-1, layers "
        f"< {max_layer:g} every {config.layer_stride}; {len(rows['harmful'])} harmful and {len(rows['harmless'])} "
        "harmless instructions",
        highlight=False,
    )
    with steps(console, "candidates", len(todo), enabled=config.progress) as progress:
        for position, layer in todo:
            r = diffs[positions + position, layer]
            if float(r.norm()) <= 1e-6 * float(diffs.norm(dim=-1).max()):
                # resid_pre.0 at a template token: the same embedding in both sets, no direction to test
                state["candidates"].append(
                    {"position": position, "layer": layer, "norm": float(r.norm()), "skipped": "zero"}
                )
                atomic_write_json(path, state)
                progress.advance()
                continue
            ablate = ablation_edits(model, r)
            harmful = logits("harmful", ablate)
            harmless = logits("harmless", ablate)
            induced = logits("harmless", addition_edits(layer, r))
            state["candidates"].append(
                {
                    "position": position,
                    "layer": layer,
                    "norm": float(r.norm()),
                    "bypass_score": float(refusal_scores(harmful, refusal_ids).mean()),
                    "induce_score": float(refusal_scores(induced, refusal_ids).mean()),
                    "kl": float(kl_divergence(base_harmless, harmless).mean()),
                }
            )
            atomic_write_json(path, state)
            progress.advance()
    scored = [c for c in state["candidates"] if "skipped" not in c]
    for c in state["candidates"]:
        c["passes"] = (
            "skipped" not in c and c["kl"] < config.kl_threshold and c["induce_score"] > config.induce_threshold
        )
    passing = [c for c in scored if c["passes"]]
    gentle = [c for c in scored if c["kl"] < config.kl_threshold]
    pool = passing or gentle or scored  # a direction that breaks harmless answers (high KL) is the last resort
    if not pool:
        raise UsageError("no candidate to select (check --max-layer-fraction and --layer-stride)")
    chosen = min(pool, key=lambda c: c["bypass_score"])
    fallback = "" if passing else "kl only" if gentle else "none"
    state["selected"] = {**chosen, "passed_filters": bool(passing), "fallback": fallback}
    state["criteria"] = {
        "kl_below": config.kl_threshold,
        "induce_above": config.induce_threshold,
        "layer_below": max_layer,
        "choose": "lowest bypass score",
    }
    atomic_write_json(path, state)
    if not passing:
        among = "those with KL below the threshold" if gentle else "all candidates (none has KL below the threshold)"
        console.print(
            f"[yellow]note[/]: no candidate passed every filter; the lowest bypass score among {among} is used",
            highlight=False,
        )
    return state


def _generation_stage(
    out: Path,
    model: Any,
    tokenizer: Any,
    direction: torch.Tensor,
    layer: int,
    evaluation: dict[str, list[str]],
    config: Any,
    console: Any,
) -> list[dict[str, Any]]:
    """Greedy answers for each condition and set, judged (out/completions.jsonl, one block at a time)."""
    from tether.atomic import atomic_write_jsonl
    from tether.generation.engine import GenerationEngine, SamplingParams
    from tether.interp.hooks import editing
    from tether.judges.refusal import RefusalJudge

    path = out / "completions.jsonl"
    key = f"resid_pre.{layer}@{float(direction.norm()):.6f}"  # which direction a block was generated with
    rows: list[dict[str, Any]] = []
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    edits = {"baseline": [], "ablation": ablation_edits(model, direction), "addition": addition_edits(layer, direction)}
    engine = GenerationEngine(model, tokenizer, batch_size=config.batch_size * 4, progress=config.progress)
    judge: RefusalJudge | None = None
    params = SamplingParams(max_new_tokens=config.max_new_tokens)
    for condition in CONDITIONS:
        for name in SETS:
            texts = evaluation[name]
            used = "none" if condition == "baseline" else key
            block = [r for r in rows if r["condition"] == condition and r["set"] == name]
            if [r["instruction"] for r in block] == texts and all(r.get("direction") == used for r in block):
                continue
            rows = [r for r in rows if not (r["condition"] == condition and r["set"] == name)]
            console.print(f"generate: {condition}, {name} ({len(texts)})", highlight=False)
            with editing(model, edits[condition]):
                ids = engine.generate_ids(texts, params)
            answers = [tokenizer.decode(i, skip_special_tokens=True).strip() for i in ids]
            judge = judge or RefusalJudge()
            verdicts = judge.judge_many(list(zip(texts, answers, strict=True)))
            rows += [
                {
                    "condition": condition,
                    "set": name,
                    "instruction": t,
                    "completion": a,
                    "completion_ids": i,
                    "verdict": v.to_dict(),
                    "direction": used,
                }
                for t, a, i, v in zip(texts, answers, ids, verdicts, strict=True)
            ]
            atomic_write_jsonl(path, rows)
    return rows


def _loss_stage(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], direction: torch.Tensor, layer: int, config: Any
) -> dict[str, Any]:
    """Mean per-token loss of the baseline model's own harmless answers under each condition."""
    from tether.interp.activations import instruction_ids, pad_id_of
    from tether.stats import bootstrap_mean

    block = [r for r in rows if r["condition"] == "baseline" and r["set"] == "harmless" and r["completion_ids"]]
    prompts = instruction_ids(tokenizer, [r["instruction"] for r in block])
    completions = [r["completion_ids"] for r in block]
    edits = {"baseline": [], "ablation": ablation_edits(model, direction), "addition": addition_edits(layer, direction)}
    per: dict[str, list[tuple[float, int]]] = {
        c: completion_nll(
            model, prompts, completions, pad_id=pad_id_of(tokenizer), edits=e, batch_size=config.batch_size
        )
        for c, e in edits.items()
    }
    tokens = sum(n for _, n in per["baseline"])
    result: dict[str, Any] = {
        "texts": len(block),
        "tokens": tokens,
        "on": "harmless eval instructions + baseline answers",
    }
    for condition, values in per.items():
        result[condition] = sum(s for s, _ in values) / max(tokens, 1)
        if condition != "baseline":
            deltas = [(s - b) / n for (s, n), (b, _) in zip(values, per["baseline"], strict=True) if n]
            result[f"{condition}_delta_per_text"] = bootstrap_mean(deltas, seed=config.seed).to_dict()
    return result


def run_refusal_direction(config: Any, *, console: Any = None) -> dict[str, Any]:
    """Run `tether interp refusal-direction` (:class:`~tether.interp.direction_config.InterpRefusalDirectionConfig`).

    Stages, each reused on --resume: mean_diffs.safetensors, candidates.json, direction.safetensors,
    completions.jsonl, results.json, model/ (orthogonalised checkpoint), report.html."""
    from rich.console import Console

    from tether.atomic import atomic_write_json, atomic_write_text
    from tether.config import dump_config
    from tether.interp.activations import (
        instruction_ids,
        pad_id_of,
        read_disjoint_instructions,
        read_instructions,
    )
    from tether.interp.probes import load_for
    from tether.runs.folders import check_run_folder, open_run_folder

    console = console or Console()
    seed = config.seed
    train = {
        "harmful": read_instructions(config.harmful_train, limit=config.train_limit, seed=seed),
        "harmless": read_instructions(config.harmless_train, limit=config.train_limit, seed=seed),
    }
    limits = (config.selection_limit, config.eval_limit)
    (sel_harmful, eval_harmful), (sel_harmless, eval_harmless) = (
        read_disjoint_instructions(path, limits, seed=seed) for path in (config.harmful_val, config.harmless_val)
    )
    if not eval_harmful or not eval_harmless:
        raise UsageError(
            f"--harmful-val/--harmless-val: no instructions left for evaluation after the {config.selection_limit} "
            "used for selection (evaluation never reuses them); lower --selection-limit or give longer files"
        )
    selection = {"harmful": sel_harmful, "harmless": sel_harmless}
    evaluation = {"harmful": eval_harmful, "harmless": eval_harmless}
    check_run_folder(config.out, RUN_KIND, resume=config.resume, overwrite=config.overwrite)
    model, tokenizer = load_for(config)
    refusal_token_ids(tokenizer, config.refusal_tokens)
    out = open_run_folder(config.out, RUN_KIND, resume=config.resume, overwrite=config.overwrite)
    atomic_write_text(out / "config.yaml", dump_config(config))
    console.print(
        f"[bold]interp refusal-direction[/]: {config.model}; train {len(train['harmful'])}+{len(train['harmless'])}, "
        f"selection {len(selection['harmful'])}+{len(selection['harmless'])}, evaluation "
        f"{len(evaluation['harmful'])}+{len(evaluation['harmless'])} (harmful+harmless)",
        highlight=False,
    )
    diffs, kept = _candidate_stage(out, model, tokenizer, train, config, console)
    state = _selection_stage(out, model, tokenizer, diffs, selection, config, console)
    chosen = state["selected"]
    layer, position = chosen["layer"], chosen["position"]
    direction = diffs[diffs.shape[0] + position, layer]
    meta = {
        "model": config.model,
        "site": f"resid_pre.{layer}",
        "layer": layer,
        "position": position,
        "norm": float(direction.norm()),
        "scores": {k: chosen[k] for k in ("bypass_score", "induce_score", "kl")},
        "passed_filters": chosen["passed_filters"],
        "method": "Arditi et al. 2024 difference in means",
    }
    save_direction(out / "direction.safetensors", direction, meta)
    console.print(
        f"direction: position {position}, layer {layer} (bypass {chosen['bypass_score']:.2f}, induce "
        f"{chosen['induce_score']:.2f}, KL {chosen['kl']:.3f})",
        highlight=False,
    )
    rows = _generation_stage(out, model, tokenizer, direction, layer, evaluation, config, console)
    rates = {
        c: {s: refusal_rates([r for r in rows if r["condition"] == c and r["set"] == s]) for s in SETS}
        for c in CONDITIONS
    }
    loss = _loss_stage(model, tokenizer, rows, direction, layer, config)
    check: dict[str, Any] = {}
    marker = out / "model" / "tether_direction.json"
    if config.export_model and marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == meta:
        previous = out / "results.json"
        check = (
            json.loads(previous.read_text(encoding="utf-8")).get("orthogonalized_check", {})
            if previous.is_file()
            else {}
        )
        console.print(f"orthogonalised model: reusing {out / 'model'}", highlight=False)
    elif config.export_model:
        probe_rows = instruction_ids(tokenizer, selection["harmful"][:4])
        from tether.interp.activations import forward

        hooked = forward(
            model, probe_rows, pad_id=pad_id_of(tokenizer), logits=True, edits=ablation_edits(model, direction)
        )
        save_orthogonalized(model, tokenizer, direction, out / "model")
        atomic_write_json(marker, meta)
        plain = forward(model, probe_rows, pad_id=pad_id_of(tokenizer), logits=True)
        assert hooked.logits is not None and plain.logits is not None
        check = {
            "prompts": len(probe_rows),
            "max_abs_logit_difference": float((hooked.logits - plain.logits).abs().max()),
        }
        console.print(
            f"orthogonalised model: {out / 'model'} (max |logit - hooks| {check['max_abs_logit_difference']:.2e})",
            highlight=False,
        )
    overlap = (
        len(set(selection["harmful"]) & set(evaluation["harmful"])),
        len(set(selection["harmless"]) & set(evaluation["harmless"])),
    )
    results = {
        "model": config.model,
        "direction": meta,
        "train": kept,
        "selection": {"harmful": len(selection["harmful"]), "harmless": len(selection["harmless"])},
        "evaluation": {
            "harmful": len(evaluation["harmful"]),
            "harmless": len(evaluation["harmless"]),
            "shared_with_selection": {"harmful": overlap[0], "harmless": overlap[1]},
        },
        "judge": "RefusalJudge() (phrases + classifier)",
        "max_new_tokens": config.max_new_tokens,
        "rates": rates,
        "loss": loss,
        "orthogonalized_check": check,
    }
    atomic_write_json(out / "results.json", results)
    _print_results(console, results)
    _write_report(out, state, results, diffs.shape[0], layer_count(model))
    return results


def _fmt(e: dict[str, Any]) -> str:
    if not e["n"]:
        return "-"
    return f"{e['value']:.1%} [{e['low']:.1%}, {e['high']:.1%}] (n={e['n']})"


def _result_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for condition in CONDITIONS:
        r = results["rates"][condition]
        rows.append(
            (
                condition,
                _fmt(r["harmful"]["refusal"]),
                _fmt(r["harmless"]["refusal"]),
                _fmt(r["harmful"]["any_refusal"]),
                _fmt(r["harmless"]["any_refusal"]),
                f"{results['loss'][condition]:.4f}",
            )
        )
    return rows


HEADERS = (
    "condition",
    "harmful: refuses",
    "harmless: refuses",
    "harmful: refuses or partial",
    "harmless: refuses or partial",
    "harmless loss",
)


def _print_results(console: Any, results: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="refusal direction")
    for header in HEADERS:
        table.add_column(header)
    for row in _result_rows(results):
        table.add_row(*row)
    console.print(table)


def _write_report(out: Path, state: dict[str, Any], results: dict[str, Any], positions: int, layers: int) -> None:
    from tether.report.html import page, paragraph, section, table, write_html

    cells = {(c["position"], c["layer"]): c for c in state["candidates"]}
    used = sorted({c["layer"] for c in state["candidates"]})
    row_labels = [str(p) for p in range(-positions, 0)]
    chosen = state["selected"]
    mark = (chosen["position"] + positions, used.index(chosen["layer"]))

    def grid(key: str) -> list[list[float]]:
        return [[cells.get((p, layer), {}).get(key, math.nan) for layer in used] for p in range(-positions, 0)]

    maps = [
        heatmap(
            grid(key),
            xlabels=[str(x) for x in used],
            ylabels=row_labels,
            title=title,
            xlabel="layer",
            ylabel="post-instruction position",
            mark=mark,
        )
        for key, title in (
            ("bypass_score", "bypass score (harmful refusal score under ablation; lower is better)"),
            ("induce_score", "induce score (harmless refusal score under addition)"),
            ("kl", "KL(baseline || ablation) on harmless"),
        )
    ]
    direction, loss = results["direction"], results["loss"]
    html = page(
        f"Refusal direction ({results['model']})",
        [
            section(
                "Selected direction",
                paragraph(
                    f"resid_pre.{direction['layer']} at post-instruction position {direction['position']} (norm "
                    f"{direction['norm']:.2f}); bypass {direction['scores']['bypass_score']:.3f}, induce "
                    f"{direction['scores']['induce_score']:.3f}, KL {direction['scores']['kl']:.4f}; passed the "
                    f"filters: {direction['passed_filters']}. Baseline refusal scores on the selection sets: harmful "
                    f"{state['baseline']['harmful_refusal_score']:.3f}, harmless "
                    f"{state['baseline']['harmless_refusal_score']:.3f}. "
                    f"Refusal tokens {state['refusal_tokens']} (ids {state['refusal_token_ids']}). Layers considered: "
                    f"below {state['criteria']['layer_below']:g} of {layers}."
                ),
            ),
            section("Candidates", *maps),
            section(
                "Refusal rates and loss",
                paragraph(
                    f"Greedy answers of {results['max_new_tokens']} tokens judged by {results['judge']}; 95% bootstrap "
                    f"intervals over scored answers. Loss: mean per-token NLL of the baseline model's own answers to "
                    f"{loss['texts']} harmless instructions ({loss['tokens']} tokens)."
                ),
                table(HEADERS, _result_rows(results)),
            ),
        ],
    )
    write_html(out / "report.html", html)
