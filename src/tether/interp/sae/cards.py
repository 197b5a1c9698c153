"""`tether sae cards`: the tokens that activate each latent most, in context, as a self-contained HTML page.

One pass over the store keeps, per chosen latent, the ``top`` largest activations and their token indices
(a running top-k merged batch by batch) and counts how often it is active. Each card shows the latent's
density, its largest activation and its top examples: the ``context`` tokens on each side of the
activating token (the same example, from the store's example/position/token_id columns), decoded with the
tokenizer, the activating token highlighted.
"""

from __future__ import annotations

from html import escape
from typing import Any

import torch

from tether.errors import DataError, UsageError
from tether.interp.sae.architectures import SparseAutoencoder
from tether.interp.sae.config import SaeCardsConfig
from tether.interp.sae.metrics import resolve_site, sae_folder
from tether.interp.sae.saelens import load_sae
from tether.interp.store import ActivationStore

_CSS = (
    "<style>.ctx { font-family: ui-monospace, monospace; white-space: pre-wrap; }"
    " .ctx mark { background: #ffd54f; font-weight: bold; } .act { text-align: right; }</style>"
)


@torch.no_grad()
def top_activations(
    sae: SparseAutoencoder,
    store: ActivationStore,
    site: str,
    features: list[int] | None,
    *,
    top: int,
    count: int,
    limit: int | None,
    batch_size: int,
) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor], int]:
    """``(features, values [top, F], token indices [top, F], active counts [F], columns, tokens)`` over
    the first ``limit`` tokens; with ``features`` None, the first ``count`` latents active anywhere."""
    columns: dict[str, list[torch.Tensor]] = {"example": [], "position": [], "token_id": []}
    chosen = torch.arange(sae.d_sae) if features is None else torch.tensor(features)
    best_v = torch.full((top, len(chosen)), -float("inf"))
    best_i = torch.full((top, len(chosen)), -1, dtype=torch.int64)
    counts = torch.zeros(len(chosen), dtype=torch.int64)
    seen = 0
    for chunk in store.chunks(site, ["example", "position", "token_id"]):
        n = chunk[site].shape[0] if limit is None else min(chunk[site].shape[0], limit - seen)
        if n <= 0:
            break
        for name in columns:
            columns[name].append(chunk[name][:n])
        x = chunk[site][:n].float()
        for start in range(0, n, batch_size):
            f = sae.encode(x[start : start + batch_size])[:, chosen]
            counts += (f != 0).sum(0)
            f = torch.where(f != 0, f, -float("inf"))
            ids = torch.arange(seen + start, seen + start + f.shape[0]).unsqueeze(1).expand_as(f)
            values = torch.cat([best_v, f])
            order = values.topk(min(top, values.shape[0]), dim=0).indices
            best_v = values.gather(0, order)
            best_i = torch.cat([best_i, ids]).gather(0, order)
        seen += n
    if seen == 0:
        raise DataError("holds no tokens", file=store.folder)
    cols = {name: torch.cat(parts) for name, parts in columns.items()}
    if features is None:
        alive = (counts > 0).nonzero().squeeze(1)[:count]
        chosen, best_v, best_i, counts = chosen[alive], best_v[:, alive], best_i[:, alive], counts[alive]
    return chosen.tolist(), best_v, best_i, counts, cols, seen


def context_of(cols: dict[str, torch.Tensor], index: int, width: int) -> tuple[list[int], int]:
    """Token ids around token ``index`` within its example, and the position of ``index`` among them."""
    example = cols["example"]
    lo = index
    while lo > 0 and index - lo < width and example[lo - 1] == example[index]:
        lo -= 1
    hi = index
    while hi + 1 < example.numel() and hi - index < width and example[hi + 1] == example[index]:
        hi += 1
    return cols["token_id"][lo : hi + 1].tolist(), index - lo


def _context_html(pieces: list[str], at: int) -> str:
    parts = [f"<mark>{escape(p)}</mark>" if i == at else escape(p) for i, p in enumerate(pieces)]
    return f'<span class="ctx">{"".join(parts)}</span>'


def cards_page(title: str, cards: list[dict[str, Any]], note: str) -> str:
    from tether.report.html import page, paragraph, section

    sections = [_CSS, paragraph(note)]
    for card in cards:
        rows = "\n".join(
            f'<tr><td class="act">{e["activation"]:.3f}</td><td>{_context_html(e["pieces"], e["at"])}</td></tr>'
            for e in card["examples"]
        )
        head = paragraph(f"active on {card['density']:.3%} of tokens; largest activation {card['max_activation']:.3f}")
        table = (
            f"<table>\n<thead><tr><th>activation</th><th>context</th></tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"
        )
        sections.append(section(f"Latent {card['feature']}", head, table))
    return page(title, sections)


def _features(text: str | None, d_sae: int) -> list[int] | None:
    if text is None:
        return None
    try:
        out = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"--features {text!r}: expected comma-separated latent indices (e.g. 0,12,40)") from None
    bad = [f for f in out if not 0 <= f < d_sae]
    if bad or not out:
        raise UsageError(f"--features: latents are 0..{d_sae - 1}, got {bad or 'none'}")
    return out


def run_sae_cards(config: SaeCardsConfig, *, console: Any) -> dict[str, Any]:
    """Write the feature cards page (and its JSON) for ``config``; returns the JSON."""
    from tether.atomic import atomic_write_json
    from tether.models.loading import load_tokenizer
    from tether.report.html import write_html
    from tether.runs.folders import check_output_file

    output = check_output_file(config.output)
    folder = sae_folder(config.sae)
    sae, cfg = load_sae(folder)
    features = _features(config.features, sae.d_sae)
    store = ActivationStore(config.activations)
    site = resolve_site(store, cfg, config.site)
    spec = config.tokenizer or store.model or (cfg.get("metadata") or {}).get("model_name")
    if not spec:
        raise UsageError("pass --tokenizer (neither the store nor the SAE records its model)")
    tokenizer = load_tokenizer(spec)
    chosen, values, indices, counts, cols, seen = top_activations(
        sae,
        store,
        site,
        features,
        top=config.top,
        count=config.count,
        limit=config.tokens,
        batch_size=config.batch_size,
    )
    pieces: dict[int, str] = {}

    def piece(token: int) -> str:
        if token not in pieces:
            pieces[token] = tokenizer.decode([token])
        return pieces[token]

    cards = []
    for j, feature in enumerate(chosen):
        examples = []
        for value, index in zip(values[:, j].tolist(), indices[:, j].tolist(), strict=True):
            if index < 0 or value == -float("inf"):
                continue
            ids, at = context_of(cols, index, config.context)
            examples.append(
                {
                    "activation": value,
                    "example": int(cols["example"][index]),
                    "position": int(cols["position"][index]),
                    "pieces": [piece(t) for t in ids],
                    "at": at,
                }
            )
        max_act = examples[0]["activation"] if examples else 0.0
        cards.append(
            {"feature": feature, "density": int(counts[j]) / seen, "max_activation": max_act, "examples": examples}
        )
    result = {"sae": str(folder), "site": site, "tokens": seen, "cards": cards}
    note = f"SAE {folder} ({cfg['architecture']}, {sae.d_sae} latents) at {site}; {seen} tokens of {store.folder}."
    write_html(output, cards_page("SAE feature cards", cards, note))
    atomic_write_json(output.with_suffix(".json"), result)
    if console is not None:
        console.print(f"sae cards: {len(cards)} latents -> {output}", highlight=False)
    return result
