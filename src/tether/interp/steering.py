"""Steering: edit one site's activation along a direction during generation (Turner et al. 2023, activation
addition; Templeton et al. 2024, feature clamping).

- add: ``x <- x + alpha r`` at every position (``r`` as given, or ``r^`` with ``normalize``);
- clamp: ``x <- x + (c - x . r^) r^``, the projection onto ``r^`` set to ``c`` at every position.

The direction is a ``direction.safetensors`` (`tether interp refusal-direction`; its ``site`` is where it was
found) or an SAE feature: SAELens's folder format (``cfg.json`` + ``sae_weights.safetensors`` with ``W_dec``
``[d_sae, d_in]``), feature ``k``'s direction being ``W_dec[k]`` and its site ``cfg.json``'s ``hook_name``
(``blocks.L.hook_resid_post``) or ``tether_site``. Python: ``with steered(model, "resid_pre.12", r, alpha=4):
model.generate(...)``. `tether interp steer` sweeps strengths: refusal rate (tether's refusal judge) on the
prompts and loss of unsteered answers to harmless prompts, per strength.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from tether.errors import DataError, UsageError
from tether.interp.hooks import Edit, editing
from tether.interp.sites import KINDS, Site, layer_count, parse_site

RUN_KIND = "interp steer"
SAE_CONFIG, SAE_WEIGHTS = "cfg.json", "sae_weights.safetensors"


def steering_edit(direction: torch.Tensor, *, alpha: float | None = None, clamp: float | None = None) -> Edit:
    """``x + alpha direction`` (``alpha``), or ``x + (clamp - x . r^) r^`` (``clamp``); exactly one of them."""
    if (alpha is None) == (clamp is None):
        raise UsageError("steer with alpha (add) or clamp (set the projection), exactly one of them")
    if clamp is None:
        assert alpha is not None
        step = float(alpha)

        def add(x: torch.Tensor) -> torch.Tensor:
            return x + step * direction.to(x.device, x.dtype)

        return add
    r_hat = direction.float() / direction.float().norm()
    value = float(clamp)

    def set_projection(x: torch.Tensor) -> torch.Tensor:
        r = r_hat.to(x.device, x.dtype)
        return x + (value - x @ r).unsqueeze(-1) * r

    return set_projection


@contextmanager
def steered(
    model: Any,
    site: Site | str,
    direction: torch.Tensor,
    *,
    alpha: float | None = None,
    clamp: float | None = None,
    normalize: bool = False,
) -> Iterator[None]:
    """Steer ``model`` at ``site`` for the ``with`` block (add ``alpha`` times the direction, or clamp its
    projection to ``clamp``); ``normalize`` adds the unit direction."""
    where = parse_site(site, layer_count(model)) if isinstance(site, str) else site
    r = direction / direction.norm() if normalize else direction
    with editing(model, [(where, steering_edit(r, alpha=alpha, clamp=clamp))]):
        yield


def _site_of_hook(name: str) -> str | None:
    """``blocks.3.hook_resid_post`` -> ``resid_post.3`` (TransformerLens's names, which SAELens records)."""
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit() and parts[2].startswith("hook_"):
        kind = parts[2].removeprefix("hook_")
        if kind in KINDS:
            return f"{kind}.{parts[1]}"
    return None


def load_steering_direction(path: str | Path, feature: int | None = None) -> tuple[torch.Tensor, str | None, dict]:
    """(direction, its site or None, meta) from a direction.safetensors or an SAE folder's feature."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_dir():
        from tether.interp.direction import load_direction

        if not path.is_file():
            raise DataError("no such file (a direction.safetensors or an SAE folder)", file=path)
        direction, meta = load_direction(path)
        return direction, meta.get("site"), meta
    if feature is None:
        raise UsageError(f"{path} is an SAE folder: pass the feature whose decoder row to steer along")
    try:
        cfg = json.loads((path / SAE_CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"not an SAE folder (no {SAE_CONFIG}; SAELens's cfg.json and {SAE_WEIGHTS})", file=path
        ) from None
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON ({err.msg})", file=path / SAE_CONFIG, line=err.lineno) from None
    try:
        with safe_open(str(path / SAE_WEIGHTS), framework="pt") as handle:
            if "W_dec" not in handle.keys():  # noqa: SIM118
                raise DataError("no tensor W_dec", file=path / SAE_WEIGHTS)
            w_dec = handle.get_slice("W_dec")
            rows = w_dec.get_shape()[0]
            if feature >= rows:
                raise UsageError(f"--feature {feature}: the SAE has features 0..{rows - 1}")
            direction = w_dec[feature : feature + 1][0].float()
    except (DataError, UsageError):
        raise
    except Exception as err:
        raise DataError(f"unreadable weights ({err})", file=path / SAE_WEIGHTS) from None
    site = cfg.get("tether_site") or _site_of_hook(str(cfg.get("hook_name", "")))
    return direction, site, {"sae": str(path), "feature": feature, "hook_name": cfg.get("hook_name")}


# -- `tether interp steer` -------------------------------------------------------------------------------------


def _strength_key(value: float) -> str:
    return repr(float(value))


def run_steer(config: Any, *, console: Any = None) -> dict[str, Any]:
    """Run `tether interp steer` (:class:`~tether.interp.direction_config.InterpSteerConfig`): for each strength,
    greedy answers to the prompts (judged) and the loss of unsteered answers to the loss prompts; sweep.json
    (saved after each strength, continued on --resume), completions.jsonl, report.html."""
    from rich.console import Console

    from tether.atomic import atomic_write_json, atomic_write_jsonl, atomic_write_text
    from tether.config import dump_config
    from tether.generation.engine import GenerationEngine, SamplingParams
    from tether.interp.activations import instruction_ids, pad_id_of, read_instructions
    from tether.interp.direction import completion_nll, refusal_rates
    from tether.interp.probes import load_for
    from tether.judges.refusal import RefusalJudge
    from tether.runs.folders import check_run_folder, open_run_folder

    console = console or Console()
    prompts = read_instructions(config.prompts, limit=config.prompts_limit, seed=config.seed)
    loss_prompts = read_instructions(config.loss_prompts or config.prompts, limit=config.loss_limit, seed=config.seed)
    direction, found_site, meta = load_steering_direction(config.direction, config.feature)
    if not (config.site or found_site):
        raise UsageError(f"{config.direction} names no site; pass --site (e.g. resid_pre.12)")
    check_run_folder(config.out, RUN_KIND, resume=config.resume, overwrite=config.overwrite)
    model, tokenizer = load_for(config)
    site = parse_site(str(config.site or found_site), layer_count(model))
    if direction.shape[-1] != model.config.hidden_size:
        raise DataError(
            f"the direction has {direction.shape[-1]} dimensions, the model {model.config.hidden_size}",
            file=config.direction,
        )
    out = open_run_folder(config.out, RUN_KIND, resume=config.resume, overwrite=config.overwrite)
    atomic_write_text(out / "config.yaml", dump_config(config))
    r = direction / direction.norm() if config.normalize else direction
    console.print(
        f"[bold]interp steer[/]: {config.mode} at {site} (|r| = {float(direction.norm()):.3f}), strengths "
        f"{config.strengths}; {len(prompts)} prompts, loss on {len(loss_prompts)}",
        highlight=False,
    )
    sweep_path, rows_path = out / "sweep.json", out / "completions.jsonl"
    state: dict[str, Any] = {"site": str(site), "mode": config.mode, "direction": meta, "strengths": {}}
    rows: list[dict[str, Any]] = []
    if config.resume and sweep_path.is_file():
        previous = json.loads(sweep_path.read_text(encoding="utf-8"))
        if previous.get("site") == state["site"] and previous.get("mode") == config.mode:
            state = previous
            rows = [json.loads(x) for x in rows_path.read_text(encoding="utf-8").splitlines() if x.strip()]
    engine = GenerationEngine(model, tokenizer, batch_size=config.batch_size * 4, progress=config.progress)
    params = SamplingParams(max_new_tokens=config.max_new_tokens)
    reference = state.get("loss_reference")
    if reference is None:
        reference = engine.generate_ids(loss_prompts, params)  # unsteered answers: what the loss is measured on
        state["loss_reference"] = reference
    loss_ids = instruction_ids(tokenizer, loss_prompts)
    judge = None
    for strength in config.strengths:
        key = _strength_key(strength)
        if key in state["strengths"]:
            continue
        edit = steering_edit(r, alpha=strength) if config.mode == "add" else steering_edit(r, clamp=strength)
        console.print(f"strength {strength}", highlight=False)
        with editing(model, [(site, edit)]):
            ids = engine.generate_ids(prompts, params)
            nll = completion_nll(model, loss_ids, reference, pad_id=pad_id_of(tokenizer), batch_size=config.batch_size)
        answers = [tokenizer.decode(i, skip_special_tokens=True).strip() for i in ids]
        judge = judge or RefusalJudge()
        verdicts = judge.judge_many(list(zip(prompts, answers, strict=True)))
        block = [
            {"strength": strength, "instruction": p, "completion": a, "verdict": v.to_dict()}
            for p, a, v in zip(prompts, answers, verdicts, strict=True)
        ]
        rows = [x for x in rows if _strength_key(x["strength"]) != key] + block
        tokens = sum(n for _, n in nll)
        state["strengths"][key] = {
            "strength": strength,
            **refusal_rates(block),
            "loss": sum(s for s, _ in nll) / max(tokens, 1),
            "loss_tokens": tokens,
        }
        atomic_write_jsonl(rows_path, rows)
        atomic_write_json(sweep_path, state)
    summary = {k: v for k, v in state.items() if k != "loss_reference"}
    summary["sweep"] = [state["strengths"][_strength_key(s)] for s in config.strengths]
    _write_steer_report(out, summary, config)
    for point in summary["sweep"]:
        refusal = point["refusal"]
        console.print(
            f"strength {point['strength']:g}: refusal {refusal['value']:.1%} (n={refusal['n']}), "
            f"loss {point['loss']:.4f}",
            highlight=False,
        )
    return summary


def _write_steer_report(out: Path, summary: dict[str, Any], config: Any) -> None:
    from tether.report.html import page, paragraph, section, table, write_html
    from tether.report.plots import line_chart

    sweep = summary["sweep"]
    refusal = {
        "refuses": [(p["strength"], p["refusal"]["value"]) for p in sweep if p["refusal"]["n"]],
        "refuses or partial": [(p["strength"], p["any_refusal"]["value"]) for p in sweep if p["any_refusal"]["n"]],
    }
    loss = {"loss": [(p["strength"], p["loss"]) for p in sweep]}
    rows = [
        (
            f"{p['strength']:g}",
            f"{p['refusal']['value']:.1%} [{p['refusal']['low']:.1%}, {p['refusal']['high']:.1%}]"
            if p["refusal"]["n"]
            else "-",
            f"{p['any_refusal']['value']:.1%}" if p["any_refusal"]["n"] else "-",
            p["unscored"],
            f"{p['loss']:.4f}",
        )
        for p in sweep
    ]
    how = "x <- x + strength * r" if config.mode == "add" else "x <- x + (strength - x . r^) r^"
    html = page(
        f"Steering sweep ({config.model}, {summary['site']})",
        [
            section(
                "Sweep",
                paragraph(
                    f"{how} at {summary['site']}, every position, during generation; direction {config.direction}."
                ),
                line_chart(refusal, "refusal rate against strength", "strength", "refusal rate"),
                line_chart(
                    loss, "loss of unsteered harmless answers against strength", "strength", "loss (nats/token)"
                ),
                table(["strength", "refuses", "refuses or partial", "unscored", "loss"], rows),
            )
        ],
    )
    write_html(out / "report.html", html)
