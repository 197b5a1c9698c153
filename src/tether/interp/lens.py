"""Logit lens (nostalgebraist 2020, "interpreting GPT: the logit lens"): decode every layer's residual stream as if
it were the last one.

For the embeddings (``resid_pre.0``) and each layer ``i``: ``logits_i = W_U · norm(resid_post.i)``, with the model's
own final norm (:func:`tether.interp.sites.final_norm`) and output embeddings, ``p_i = softmax(logits_i)``. Per
position it reports the top token of ``p_i`` and its probability; the probability and rank (1 = top) under
``p_i`` of the model's final top token; and ``KL(p_final || p_i) = Σ_v p_final(v) (log p_final(v) - log p_i(v))``.
The last layer's lens is the model's own output (tested), so its KL is 0. Models that transform the logits after
the unembedding (Gemma 2's soft-capping) get the lens of the uncapped logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from rich.console import Console

from tether.atomic import atomic_write_json, atomic_write_text
from tether.config import dump_config
from tether.errors import ModelError, UsageError
from tether.interp.config import InterpLensConfig
from tether.interp.encode import Batch, device_of, encode, forward_kwargs, load_inspected, token_labels
from tether.interp.hooks import recording
from tether.interp.sites import Site, final_norm, layer_count
from tether.interp.texts import Text, model_inputs, read_texts
from tether.models.loading import inner_model
from tether.report.html import page, paragraph, section, table, write_html
from tether.report.plots import heatmap, line_chart
from tether.report.progress import track
from tether.runs.folders import check_run_folder, open_run_folder

KIND = "interp lens"
HTML_PROMPTS = 10
"""Prompts drawn in the report (lens.json holds them all)."""


def unembed(model: Any, resid: torch.Tensor) -> torch.Tensor:
    """The logits the model would output if ``resid`` were its last residual stream: ``W_U · final_norm(resid)``."""
    head = inner_model(model).get_output_embeddings()
    if head is None:
        raise ModelError(f"{type(model).__name__} has no output embeddings to decode the residual stream with")
    return head(final_norm(model)(resid))


@dataclass
class Lens:
    token_ids: list[int]
    rows: list[str]
    """"embeddings", then "0" .. "L-1"."""
    top_id: torch.Tensor
    """[rows, positions] the top token of each row's distribution."""
    top_prob: torch.Tensor
    final_id: torch.Tensor
    """[positions] the model's own top token."""
    final_prob: torch.Tensor
    """[rows, positions] the probability of ``final_id`` under each row's distribution."""
    final_rank: torch.Tensor
    """[rows, positions] its rank there (1 = top)."""
    kl: torch.Tensor
    """[rows, positions] KL(final || row) in nats."""


def logit_lens(model: Any, ids: Sequence[int]) -> Lens:
    """The lens of one token sequence (no padding, no special tokens added)."""
    layers = layer_count(model)
    sites = [Site("resid_pre", 0)] + [Site("resid_post", i) for i in range(layers)]
    batch = Batch(torch.tensor([list(ids)]), torch.ones(1, len(ids), dtype=torch.long))
    with torch.inference_mode(), recording(model, sites, to=device_of(model)) as seen:
        final = model(**forward_kwargs(model, batch)).logits[0].float()
        final_logp = final.log_softmax(-1)
        final_p = final_logp.exp()
        final_id = final.argmax(-1)
        stats: list[list[torch.Tensor]] = []
        for site in sites:
            logp = unembed(model, seen[site])[0].float().log_softmax(-1)
            top_logp, top_id = logp.max(-1)
            target = logp.gather(-1, final_id[:, None])[:, 0]
            rank = (logp > target[:, None]).sum(-1) + 1
            kl = torch.where(final_p > 0, final_p * (final_logp - logp), 0.0).sum(-1)
            stats.append([top_id, top_logp.exp(), target.exp(), rank, kl])
    top_id, top_prob, final_prob, final_rank, kl = (torch.stack([s[k] for s in stats]).cpu() for k in range(5))
    rows = ["embeddings", *(str(i) for i in range(layers))]
    return Lens(list(ids), rows, top_id, top_prob, final_id.cpu(), final_prob, final_rank, kl)


def lens_record(tokenizer: Any, lens: Lens, text: str) -> dict[str, Any]:
    """The JSON record of one lens: tokens, then per row lists over positions."""
    return {
        "text": text,
        "tokens": token_labels(tokenizer, lens.token_ids),
        "token_ids": lens.token_ids,
        "final_top": token_labels(tokenizer, lens.final_id.tolist()),
        "rows": [
            {
                "row": row,
                "top_token": token_labels(tokenizer, lens.top_id[r].tolist()),
                "top_id": lens.top_id[r].tolist(),
                "top_prob": lens.top_prob[r].tolist(),
                "final_prob": lens.final_prob[r].tolist(),
                "final_rank": lens.final_rank[r].tolist(),
                "kl": lens.kl[r].tolist(),
                "mean_kl": float(lens.kl[r].mean()),
            }
            for r, row in enumerate(lens.rows)
        ],
    }


def _report(model_name: str, records: list[dict[str, Any]], truncated: int) -> str:
    rows = [r["row"] for r in records[0]["rows"]]
    mean_kl = [sum(rec["rows"][i]["mean_kl"] for rec in records) / len(records) for i in range(len(rows))]
    kl_points = [(float(i - 1), kl) for i, kl in enumerate(mean_kl)]
    parts = [
        section(
            "Logit lens",
            paragraph(
                "Each layer's residual stream read through the model's final norm and unembedding (nostalgebraist "
                "2020). Rows: the embeddings, then the output of each decoder layer; the last row is the model's "
                "own prediction. KL(final || layer) is in nats, averaged over positions and texts."
            ),
            line_chart({"mean KL": kl_points}, "KL(final || layer)", "layer (-1: embeddings)", "nats"),
            table(["row", "mean KL (nats)"], [(row, f"{kl:.4f}") for row, kl in zip(rows, mean_kl, strict=True)]),
            paragraph(f"{len(records)} texts; {truncated} cut at --max-length.") if truncated else "",
        )
    ]
    for n, rec in enumerate(records[:HTML_PROMPTS], 1):
        top = [r["top_prob"] for r in rec["rows"]]
        final = [r["final_prob"] for r in rec["rows"]]
        labels = [[t.strip() or repr(t) for t in r["top_token"]] for r in rec["rows"]]
        parts.append(
            section(
                f"Text {n}",
                paragraph(rec["text"]),
                heatmap(
                    top,
                    xlabels=rec["tokens"],
                    ylabels=rows,
                    title="top token of each layer and its probability",
                    xlabel="input token (the lens predicts the next one)",
                    colorbar="p(top token)",
                    vmin=0.0,
                    vmax=1.0,
                    annotations=labels,
                ),
                heatmap(
                    final,
                    xlabels=[f"{t} → {f}" for t, f in zip(rec["tokens"], rec["final_top"], strict=True)],
                    ylabels=rows,
                    title="probability of the model's final prediction at each layer",
                    xlabel="input token → the model's prediction",
                    colorbar="p(final top token)",
                    vmin=0.0,
                    vmax=1.0,
                ),
            )
        )
    if len(records) > HTML_PROMPTS:
        parts.append(paragraph(f"{len(records) - HTML_PROMPTS} more texts in lens.json."))
    return page(f"Logit lens: {model_name}", parts)


def run_lens(config: InterpLensConfig, *, console: Console | None = None) -> dict[str, Any]:
    """Run `tether interp lens`: writes ``lens.json`` (every text) and ``report.html`` (heatmaps, last)."""
    console = console or Console()
    if config.prompt is not None:
        texts = [Text(config.prompt, "--prompt", is_instruction=True)]
    else:
        texts = read_texts(str(config.data), field=config.field, limit=config.limit)
    check_run_folder(config.out, KIND, overwrite=config.overwrite)
    model, tokenizer = load_inspected(
        config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code, revision=config.revision
    )
    inputs = model_inputs(tokenizer, texts, chat=config.chat)
    encoded = encode(tokenizer, inputs)
    truncated = sum(len(ids) > config.max_length for ids in encoded)
    out = open_run_folder(config.out, KIND, overwrite=config.overwrite)
    atomic_write_text(out / "config.yaml", dump_config(config))
    records = []
    for text, ids in track(list(zip(inputs, encoded, strict=True)), KIND, enabled=config.progress, console=console):
        if ids:
            records.append(lens_record(tokenizer, logit_lens(model, ids[: config.max_length]), text))
    if not records:
        raise UsageError("every text is empty after tokenization; nothing to inspect")
    result = {"model": config.model, "layers": layer_count(model), "texts": len(records), "truncated": truncated}
    result["mean_kl"] = {
        row["row"]: sum(rec["rows"][i]["mean_kl"] for rec in records) / len(records)
        for i, row in enumerate(records[0]["rows"])
    }
    result["lenses"] = records
    atomic_write_json(out / "lens.json", result)
    write_html(out / "report.html", _report(config.model, records, truncated))
    console.print(f"logit lens of {len(records)} texts: {out / 'lens.json'}  report: {out / 'report.html'}")
    return result
