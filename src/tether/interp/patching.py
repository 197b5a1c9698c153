"""Activation patching (Meng et al. 2022, "Locating and editing factual associations in GPT"; metric and
normalisation after Heimersheim and Nanda 2024, "How to use and interpret activation patching").

A clean prompt (the model answers ``answer``) and a corrupted one of the same token length (it answers
``wrong``). The metric is the logit difference at the last position, ``m = logit(answer) - logit(wrong)``. For
each site (kind x layer) and position ``p``, the corrupted prompt is run with the activation at (site, p)
replaced by the clean run's (a denoising patch); the normalised effect is
``(m_patched - m_corrupted) / (m_clean - m_corrupted)``: 1 when the patch alone restores the clean behaviour, 0
when it does nothing. Each site is also patched at every position at once. Patched runs are batched: row ``r``
of a forward pass carries its own (site, positions) patch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from rich.console import Console

from tether.atomic import atomic_write_json, atomic_write_text
from tether.config import dump_config
from tether.errors import UsageError
from tether.interp.config import InterpPatchConfig
from tether.interp.encode import Batch, device_of, encode, forward_kwargs, load_inspected, token_labels
from tether.interp.hooks import editing, recording
from tether.interp.sites import KINDS, Site, layer_count
from tether.interp.texts import Text, model_inputs
from tether.models.loading import load_tokenizer
from tether.report.html import page, paragraph, section, table, write_html
from tether.report.plots import heatmap
from tether.report.progress import steps
from tether.runs.folders import check_run_folder, open_run_folder

KIND = "interp patch"

Job = tuple[Site, Sequence[int]]
"""One patched run: the site and the positions where the clean activation replaces the corrupted one."""


@dataclass(frozen=True)
class Pair:
    clean: list[int]
    corrupted: list[int]
    answer: int
    wrong: int


def parse_kinds(text: str) -> list[str]:
    """``"resid_pre,attn_out"`` -> the kinds, checked."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise UsageError(f"--sites {text!r}: expected kinds among {', '.join(KINDS)} (e.g. resid_pre,attn_out)")
    return list(dict.fromkeys(kinds))


def single_token(tokenizer: Any, text: str, flag: str) -> int:
    """The one token id of ``text`` (a UsageError naming its pieces otherwise)."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if len(ids) != 1:
        pieces = ", ".join(repr(t) for t in token_labels(tokenizer, ids))
        raise UsageError(
            f"{flag} {text!r} is {len(ids)} tokens ({pieces or 'none'}); the metric compares two single tokens, "
            "so give one token (often with its leading space, e.g. ' Paris')"
        )
    return ids[0]


def make_pair(tokenizer: Any, clean: str, corrupted: str, answer: str, wrong: str) -> Pair:
    """Tokenize and check the prompts (equal length, not identical) and the answers (one token each)."""
    clean_ids, corrupted_ids = encode(tokenizer, [clean, corrupted])
    if len(clean_ids) != len(corrupted_ids):
        shown = [", ".join(repr(t) for t in token_labels(tokenizer, ids)) for ids in (clean_ids, corrupted_ids)]
        raise UsageError(
            f"--clean is {len(clean_ids)} tokens and --corrupted {len(corrupted_ids)}; patching maps positions one "
            f"to one, so both need the same length (clean: {shown[0]}; corrupted: {shown[1]})"
        )
    if clean_ids == corrupted_ids:
        raise UsageError("--clean and --corrupted are the same tokens; nothing to patch")
    return Pair(
        clean_ids,
        corrupted_ids,
        single_token(tokenizer, answer, "--answer"),
        single_token(tokenizer, wrong, "--wrong-answer"),
    )


@torch.inference_mode()
def logit_diff(model: Any, ids: torch.Tensor, pair: Pair) -> torch.Tensor:
    """``logit(answer) - logit(wrong)`` at the last position of each row of ``ids`` [batch, positions]."""
    batch = Batch(ids, torch.ones_like(ids))
    logits = model(**forward_kwargs(model, batch, last_logits_only=True)).logits[:, -1].float()
    return (logits[:, pair.answer] - logits[:, pair.wrong]).cpu()


@torch.inference_mode()
def patched_logit_diffs(model: Any, pair: Pair, clean: dict[Site, torch.Tensor], jobs: Sequence[Job]) -> torch.Tensor:
    """The metric of the corrupted prompt under each job's patch, all jobs in one forward pass.
    ``clean[site]`` is the clean run's activation [positions, d]."""
    rows, length = len(jobs), len(pair.corrupted)
    device = device_of(model)
    masks: dict[Site, torch.Tensor] = {}
    for row, (site, positions) in enumerate(jobs):
        masks.setdefault(site, torch.zeros(rows, length, 1, dtype=torch.bool))[row, list(positions)] = True

    def patch(site: Site) -> Callable[[torch.Tensor], torch.Tensor]:
        where = masks[site].to(device)

        def replace(activation: torch.Tensor) -> torch.Tensor:
            return torch.where(where, clean[site].to(activation.dtype)[None], activation)

        return replace

    ids = torch.tensor([pair.corrupted]).repeat(rows, 1)
    with editing(model, [(site, patch(site)) for site in masks]):
        return logit_diff(model, ids, pair)


def normalised(value: float, clean: float, corrupted: float) -> float:
    """``(value - corrupted) / (clean - corrupted)``; NaN when clean and corrupted agree."""
    return (value - corrupted) / (clean - corrupted) if clean != corrupted else math.nan


def patch_grid(
    model: Any,
    pair: Pair,
    kinds: Sequence[str],
    *,
    batch_size: int = 16,
    console: Console | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Patch every (kind, layer, position), and every (kind, layer) at all positions; the results as lists."""
    layers, length = layer_count(model), len(pair.clean)
    sites = [Site(kind, layer) for kind in kinds for layer in range(layers)]
    jobs: list[Job] = [(s, [p]) for s in sites for p in range(length)] + [(s, range(length)) for s in sites]
    began = time.perf_counter()
    with torch.inference_mode():
        with recording(model, sites, to=device_of(model)) as seen:
            clean_metric = float(logit_diff(model, torch.tensor([pair.clean]), pair)[0])
        clean = {site: seen[site][0] for site in sites}
        corrupted_metric = float(logit_diff(model, torch.tensor([pair.corrupted]), pair)[0])
        values: list[float] = []
        with steps(console or Console(), KIND, len(jobs), enabled=progress) as bar:
            for start in range(0, len(jobs), batch_size):
                chunk = jobs[start : start + batch_size]
                values += patched_logit_diffs(model, pair, clean, chunk).tolist()
                bar.advance(len(chunk))
    single, everywhere = values[: len(sites) * length], values[len(sites) * length :]
    results: dict[str, Any] = {}
    for k, kind in enumerate(kinds):
        grid = [single[(k * layers + layer) * length : (k * layers + layer + 1) * length] for layer in range(layers)]
        whole = everywhere[k * layers : (k + 1) * layers]
        results[kind] = {
            "effect": [[normalised(v, clean_metric, corrupted_metric) for v in row] for row in grid],
            "logit_diff": grid,
            "all_positions_effect": [normalised(v, clean_metric, corrupted_metric) for v in whole],
            "all_positions_logit_diff": whole,
        }
    return {
        "clean_logit_diff": clean_metric,
        "corrupted_logit_diff": corrupted_metric,
        "layers": layers,
        "positions": length,
        "results": results,
        "patched_runs": len(jobs),
        "forward_passes": 2 + math.ceil(len(jobs) / batch_size),
        "seconds": round(time.perf_counter() - began, 3),
    }


def _report(result: dict[str, Any]) -> str:
    labels = [c if c == w else f"{c}/{w}" for c, w in zip(result["tokens"], result["corrupted_tokens"], strict=True)]
    rows = [str(i) for i in range(result["layers"])]
    metrics = table(
        ["", "value"],
        [
            ("clean prompt", result["clean"]),
            ("corrupted prompt", result["corrupted"]),
            ("answer / wrong answer", f"{result['answer']!r} / {result['wrong_answer']!r}"),
            ("clean logit difference", f"{result['clean_logit_diff']:.4f}"),
            ("corrupted logit difference", f"{result['corrupted_logit_diff']:.4f}"),
        ],
    )
    parts = [
        section(
            "Activation patching",
            paragraph(
                "The corrupted prompt run with one activation taken from the clean run (Meng et al. 2022). Metric: "
                "logit(answer) - logit(wrong answer) at the last position; effect = (patched - corrupted) / "
                "(clean - corrupted): 1 = the patch restores the clean behaviour, 0 = no change (Heimersheim and "
                "Nanda 2024). Positions where the prompts differ are labelled clean/corrupted."
            ),
            metrics,
        )
    ]
    if result["clean_logit_diff"] == result["corrupted_logit_diff"]:
        parts.append(paragraph("Clean and corrupted logit differences are equal: the effect is undefined."))
    for kind, block in result["results"].items():
        parts.append(
            section(
                kind,
                heatmap(
                    block["effect"],
                    xlabels=labels,
                    ylabels=rows,
                    title=f"{kind}: normalised effect of patching one position",
                    colorbar="(patched - corrupted) / (clean - corrupted)",
                    cmap="RdBu_r",
                    vmin=-1.0,
                    vmax=1.0,
                    annotations=[["" if math.isnan(v) else f"{v:.2f}" for v in row] for row in block["effect"]],
                ),
                table(
                    ["layer", "effect, all positions patched"],
                    [(i, f"{v:.3f}") for i, v in enumerate(block["all_positions_effect"])],
                ),
            )
        )
    return page(f"Activation patching: {result['model']}", parts)


def run_patch(config: InterpPatchConfig, *, console: Console | None = None) -> dict[str, Any]:
    """Run `tether interp patch`: prompts, answers and sites checked with the tokenizer alone, then the model
    loaded and patched; writes ``patching.json`` and ``report.html`` (last)."""
    console = console or Console()
    kinds = parse_kinds(config.sites)
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code, revision=config.revision)
    texts = [Text(config.clean, "--clean", is_instruction=True), Text(config.corrupted, "--corrupted", True)]
    clean, corrupted = model_inputs(tokenizer, texts, chat=config.chat)
    pair = make_pair(tokenizer, clean, corrupted, config.answer, config.wrong_answer)
    check_run_folder(config.out, KIND, overwrite=config.overwrite)
    model, tokenizer = load_inspected(
        config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code, revision=config.revision
    )
    out = open_run_folder(config.out, KIND, overwrite=config.overwrite)
    atomic_write_text(out / "config.yaml", dump_config(config))
    result: dict[str, Any] = {
        "model": config.model,
        "clean": clean,
        "corrupted": corrupted,
        "tokens": token_labels(tokenizer, pair.clean),
        "corrupted_tokens": token_labels(tokenizer, pair.corrupted),
        "answer": config.answer,
        "wrong_answer": config.wrong_answer,
        "answer_id": pair.answer,
        "wrong_answer_id": pair.wrong,
        "metric": "logit(answer) - logit(wrong_answer) at the last position",
        **patch_grid(model, pair, kinds, batch_size=config.batch_size, console=console, progress=config.progress),
    }
    atomic_write_json(out / "patching.json", result)
    write_html(out / "report.html", _report(result))
    console.print(
        f"activation patching: clean {result['clean_logit_diff']:.3f}, corrupted {result['corrupted_logit_diff']:.3f} "
        f"({result['patched_runs']} patched runs, {result['seconds']} s): {out / 'patching.json'}  report: "
        f"{out / 'report.html'}",
        highlight=False,
    )
    return result
