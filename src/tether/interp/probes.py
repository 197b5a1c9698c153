"""Linear probes on the residual stream: harmful versus harmless requests, one probe per layer.

Two probes per layer (features: ``resid_post.l`` at the prompt's last token, or the mean over the
post-instruction tokens):

- **logistic regression** (scikit-learn) on standardised features, ``p = sigmoid(w . (x - m) / s + b)``,
  class-balanced, the inverse regularisation ``C`` chosen by stratified 5-fold cross-validated AUROC on the
  training set only;
- **difference of means**: ``score = x . (mu_pos - mu_neg)``, threshold the midpoint of the two training
  classes' mean scores (Marks & Tegmark 2023, "The geometry of truth"); stored as ``z = (score - t) / sd``
  (``sd``: the training scores' spread) so that ``sigmoid(z)`` is a score in [0, 1] with 0.5 at ``t``.

Each is evaluated on held-out sets: AUROC and recall at 1% false-positive rate, with 95% percentile-bootstrap
intervals (positives and negatives resampled separately, :data:`tether.stats.RESAMPLES` draws). The best
probe is exported as ``probe.safetensors`` (tensors ``weight``, ``bias``, ``mean``, ``scale``; the header's
``meta`` names the model, site, position rule and the threshold at 1% FPR on the held-out negatives), the file
the guard's ``activation_probe`` detector loads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from tether.errors import ConfigError
from tether.report.plots import band_chart
from tether.stats import RESAMPLES, Estimate

KIND = "activation-probe"
FORMAT_VERSION = 1
POSITIVE = "harmful request"
Position = Literal["last", "post_instruction_mean"]
ProbeKind = Literal["logistic", "diff_means"]
CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class LinearProbe:
    """``z = ((x - mean) / scale) . weight + bias``; ``sigmoid(z)`` is the score."""

    kind: ProbeKind
    weight: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    """How it was fitted (``C`` and its CV AUROC for logistic regression)."""

    def decision(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return ((x - self.mean) / self.scale) @ self.weight.astype(np.float64) + self.bias

    def proba(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision(x)))


def fit_logistic(x: np.ndarray, y: np.ndarray, *, seed: int = 0, cs: Sequence[float] = CS) -> LinearProbe:
    """Standardise, then class-balanced L2 logistic regression; ``C`` by 5-fold CV AUROC on ``(x, y)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = max(2, min(5, int(np.bincount(y.astype(int)).min())))
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced"))
    search = GridSearchCV(
        pipe,
        {"logisticregression__C": list(cs)},
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        scoring="roc_auc",
    )
    search.fit(x, y)
    scaler, lr = search.best_estimator_[0], search.best_estimator_[1]
    return LinearProbe(
        "logistic",
        lr.coef_[0].astype(np.float64),
        float(lr.intercept_[0]),
        scaler.mean_.astype(np.float64),
        scaler.scale_.astype(np.float64),
        {"C": float(search.best_params_["logisticregression__C"]), "cv_auroc": float(search.best_score_)},
    )


def fit_diff_means(x: np.ndarray, y: np.ndarray) -> LinearProbe:
    """``score = x . (mu_pos - mu_neg)``, thresholded at the midpoint of the classes' mean training scores."""
    x = np.asarray(x, dtype=np.float64)
    pos, neg = x[y == 1], x[y == 0]
    direction = pos.mean(0) - neg.mean(0)
    scores = x @ direction
    threshold = (float((pos @ direction).mean()) + float((neg @ direction).mean())) / 2
    spread = float(scores.std()) or 1.0
    d = x.shape[1]
    return LinearProbe(
        "diff_means", direction / spread, -threshold / spread, np.zeros(d), np.ones(d), {"threshold": threshold}
    )


# -- metrics ---------------------------------------------------------------------------------------------------


def threshold_at_fpr(negatives: np.ndarray, fpr: float) -> float:
    """The score above which at most ``floor(fpr * n)`` negatives lie: the midpoint between the
    ``(k+1)``-th and ``k``-th largest negative (``score >= threshold`` flags at most ``k`` of them)."""
    ordered = np.sort(np.asarray(negatives, dtype=np.float64))[::-1]
    k = math.floor(fpr * len(ordered) + 1e-9)
    if k >= len(ordered):
        return float(ordered[-1])
    upper = ordered[k - 1] if k > 0 else ordered[0] + max(1.0, abs(ordered[0]))
    return float((ordered[k] + upper) / 2)


def _percentile(values: np.ndarray, point: float, level: float = 0.95) -> Estimate:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Estimate(float(point), float(low), float(high), 0)


def weighted_auroc_recall(
    pos: np.ndarray, neg: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray, *, fpr: float
) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and recall at ``fpr`` for each row of counts ``w_pos [R, n_pos]``, ``w_neg [R, n_neg]`` (a
    bootstrap resample as how often it draws each score; all ones: the plain sample)."""
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    aucs = ((w_pos @ wins) * w_neg).sum(1) / (len(pos) * len(neg))
    order = np.argsort(-neg, kind="stable")
    cumulative = np.cumsum(w_neg[:, order], axis=1)
    k = math.floor(fpr * len(neg) + 1e-9)
    cut = neg[order][np.argmax(cumulative > k, axis=1)]
    below = cumulative[:, -1] <= k  # every negative may be flagged: all positives count
    recalls = (w_pos * (pos[None, :] > cut[:, None])).sum(1) / len(pos)
    return aucs, np.where(below, 1.0, recalls)


def auroc_recall(
    positives: np.ndarray, negatives: np.ndarray, *, fpr: float = 0.01, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[Estimate, Estimate]:
    """AUROC and recall at ``fpr`` false-positive rate (scikit-learn's ``roc_auc_score`` and ``roc_curve``),
    each with a stratified percentile-bootstrap interval. The resamples are computed at once as weighted
    counts: AUROC ``= w_pos^T C w_neg / (n_pos n_neg)`` with ``C_ij = [p_i > n_j] + [p_i = n_j] / 2``, recall as
    the weighted share of positives above the resample's ``(k+1)``-th largest negative, ``k = floor(fpr n_neg)``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    pos = np.asarray(positives, dtype=np.float64)
    neg = np.asarray(negatives, dtype=np.float64)
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    scores = np.r_[pos, neg]
    auc = float(roc_auc_score(labels, scores))
    false_pos, true_pos, _ = roc_curve(labels, scores)
    recall = float(true_pos[false_pos <= fpr + 1e-12].max())
    rng = np.random.default_rng(seed)
    w_pos = np.stack([np.bincount(rng.integers(0, len(pos), len(pos)), minlength=len(pos)) for _ in range(resamples)])
    w_neg = np.stack([np.bincount(rng.integers(0, len(neg), len(neg)), minlength=len(neg)) for _ in range(resamples)])
    aucs, recalls = weighted_auroc_recall(pos, neg, w_pos, w_neg, fpr=fpr)
    n = len(pos) + len(neg)
    auc_est, recall_est = _percentile(aucs, auc), _percentile(recalls, recall)
    return Estimate(auc_est.value, auc_est.low, auc_est.high, n), Estimate(
        recall_est.value, recall_est.low, recall_est.high, len(pos)
    )


# -- the exported file -----------------------------------------------------------------------------------------


def save_probe(path: str | Path, probe: LinearProbe, meta: dict[str, Any]) -> Path:
    """``probe.safetensors``: tensors weight/bias/mean/scale (float32), header kind, format_version, meta."""
    from safetensors.torch import save_file

    from tether.atomic import atomic_path
    from tether.jsonsafe import dumps

    tensors = {
        "weight": torch.tensor(probe.weight, dtype=torch.float32),
        "bias": torch.tensor([probe.bias], dtype=torch.float32),
        "mean": torch.tensor(probe.mean, dtype=torch.float32),
        "scale": torch.tensor(probe.scale, dtype=torch.float32),
    }
    meta = {**meta, "probe": probe.kind, "fit": probe.info}
    header = {"kind": KIND, "format_version": str(FORMAT_VERSION), "meta": dumps(meta)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def load_probe(path: str | Path) -> tuple[LinearProbe, dict[str, Any]]:
    """The probe and its meta; a ConfigError names the file and the command that writes one."""
    from safetensors import safe_open

    path = Path(path)
    make = "`tether interp probe --out DIR` writes DIR/probe.safetensors"
    if not path.is_file():
        raise ConfigError(f"no such file: {path} (an activation probe; {make})")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name).double().numpy() for name in handle.keys()}  # noqa: SIM118
    except Exception as err:
        raise ConfigError(f"{path}: not a readable safetensors file ({err})") from None
    if header.get("kind") != KIND:
        raise ConfigError(f"{path}: a {header.get('kind') or 'unknown'} file, not an {KIND} ({make})")
    meta = json.loads(header.get("meta", "{}"))
    for name in ("weight", "bias", "mean", "scale"):
        if name not in tensors:
            raise ConfigError(f"{path}: no tensor {name!r} ({make})")
    probe = LinearProbe(
        meta.get("probe", "logistic"),
        tensors["weight"],
        float(tensors["bias"][0]),
        tensors["mean"],
        tensors["scale"],
        meta.get("fit", {}),
    )
    return probe, meta


def features(
    model: Any,
    tokenizer: Any,
    instructions: Sequence[str],
    sites: Sequence[Any],
    position: Position,
    *,
    batch_size: int = 16,
    console: Any = None,
    max_chars: int | None = None,
) -> dict[Any, torch.Tensor]:
    """``{site: [n, d]}``: the residual at the last token, or averaged over the post-instruction tokens."""
    from tether.interp.activations import forward, instruction_ids, pad_id_of, post_instruction_ids

    last = 1 if position == "last" else len(post_instruction_ids(tokenizer))
    rows = instruction_ids(tokenizer, instructions, max_chars=max_chars)
    acts = forward(
        model,
        rows,
        pad_id=pad_id_of(tokenizer),
        sites=sites,
        last=last,
        batch_size=batch_size,
        console=console,
        label="activations",
    ).activations
    return {site: a.mean(1) for site, a in acts.items()}


# -- plots -----------------------------------------------------------------------------------------------------


# -- `tether interp probe` -------------------------------------------------------------------------------------

RUN_KIND = "interp probe"
SETS = ("harmful_train", "harmless_train", "harmful_val", "harmless_val")


def load_for(config: Any) -> tuple[Any, Any]:
    """The model and tokenizer a config (with :class:`~tether.config.ModelOptions`) names."""
    from tether.models.loading import load_model, load_tokenizer

    model = load_model(
        config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code, revision=config.revision
    ).eval()
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code, revision=config.revision)
    return model, tokenizer


def _feature_stage(
    out: Path, model: Any, tokenizer: Any, sets: dict[str, list[str]], config: Any, console: Any
) -> dict[str, torch.Tensor]:
    """``{set: [n, layers, d]}``, read from out/features.safetensors when it holds these inputs."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from tether.atomic import atomic_path
    from tether.interp.activations import fingerprint
    from tether.interp.sites import Site, layer_count

    path = out / "features.safetensors"
    identity = {
        "model": config.model,
        "revision": config.revision,
        "site": config.site,
        "position": config.position,
        **{name: fingerprint(texts) for name, texts in sets.items()},
    }
    if path.is_file():
        with safe_open(str(path), framework="pt") as handle:
            if json.loads((handle.metadata() or {}).get("identity", "null")) == identity:
                console.print(f"features: reusing {path}", highlight=False)
                return {name: handle.get_tensor(name) for name in sets}
    sites = [Site(config.site, layer) for layer in range(layer_count(model))]
    found: dict[str, torch.Tensor] = {}
    for name, texts in sets.items():
        acts = features(
            model,
            tokenizer,
            texts,
            sites,
            config.position,
            batch_size=config.batch_size,
            console=console if config.progress else None,
        )
        found[name] = torch.stack([acts[s] for s in sites], dim=1).contiguous()
    with atomic_path(path) as tmp:
        save_file(found, str(tmp), metadata={"identity": json.dumps(identity)})
    return found


def _probe_rows(
    found: dict[str, torch.Tensor], *, fpr: float, seed: int, console: Any, progress: bool
) -> tuple[list[dict[str, Any]], dict[tuple[int, str], LinearProbe]]:
    from tether.report.progress import track

    x_train = torch.cat([found["harmful_train"], found["harmless_train"]]).double().numpy()
    y_train = np.r_[np.ones(len(found["harmful_train"])), np.zeros(len(found["harmless_train"]))].astype(int)
    pos_val, neg_val = found["harmful_val"].double().numpy(), found["harmless_val"].double().numpy()
    rows, probes = [], {}
    for layer in track(range(x_train.shape[1]), "probes", enabled=progress, console=console):
        for kind, fit in (("logistic", lambda x, y: fit_logistic(x, y, seed=seed)), ("diff_means", fit_diff_means)):
            probe = fit(x_train[:, layer], y_train)
            pos, neg = probe.decision(pos_val[:, layer]), probe.decision(neg_val[:, layer])
            auroc, recall = auroc_recall(pos, neg, fpr=fpr, seed=seed)
            probes[(layer, kind)] = probe
            train_scores = probe.decision(x_train[:, layer])
            rows.append(
                {
                    "layer": layer,
                    "probe": kind,
                    "auroc": auroc.to_dict(),
                    "recall_at_fpr": recall.to_dict(),
                    "train_accuracy": float(((train_scores >= 0).astype(int) == y_train).mean()),
                    "val_accuracy_at_train_threshold": float(
                        (np.r_[pos >= 0, neg < 0]).mean()  # threshold from train: z = 0
                    ),
                    "fit": probe.info,
                }
            )
    return rows, probes


def run_probe(config: Any, *, console: Any = None) -> dict[str, Any]:
    """Run `tether interp probe` (:class:`~tether.interp.direction_config.InterpProbeConfig`): features per
    layer (out/features.safetensors, reused on --resume), probes.json, probe.safetensors, report.html."""
    from rich.console import Console

    from tether.atomic import atomic_write_json, atomic_write_text
    from tether.config import dump_config
    from tether.interp.activations import read_instructions
    from tether.runs.folders import check_run_folder, open_run_folder

    console = console or Console()
    limits = {name: getattr(config, f"{name}_limit") for name in SETS}
    sets = {name: read_instructions(getattr(config, name), limit=limits[name], seed=config.seed) for name in SETS}
    check_run_folder(config.out, RUN_KIND, resume=config.resume, overwrite=config.overwrite)
    model, tokenizer = load_for(config)
    out = open_run_folder(config.out, RUN_KIND, resume=config.resume, overwrite=config.overwrite)
    atomic_write_text(out / "config.yaml", dump_config(config))
    console.print(
        f"[bold]interp probe[/]: {config.model}, {config.site} at every layer, position {config.position}; "
        + ", ".join(f"{name} {len(texts)}" for name, texts in sets.items()),
        highlight=False,
    )
    found = _feature_stage(out, model, tokenizer, sets, config, console)
    rows, probes = _probe_rows(found, fpr=config.fpr, seed=config.seed, console=console, progress=config.progress)
    best = max(rows, key=lambda r: (r["auroc"]["value"], r["recall_at_fpr"]["value"]))
    probe = probes[(best["layer"], best["probe"])]
    negatives = probe.decision(found["harmless_val"][:, best["layer"]].double().numpy())
    positives = probe.decision(found["harmful_val"][:, best["layer"]].double().numpy())
    z = threshold_at_fpr(negatives, config.fpr)
    site = f"{config.site}.{best['layer']}"
    meta = {
        "model": config.model,
        "revision": config.revision,
        "dtype": config.dtype,
        "trust_remote_code": config.trust_remote_code,
        "site": site,
        "position": config.position,
        "positive": POSITIVE,
        "threshold": float(1 / (1 + math.exp(-z))),
        "threshold_logit": z,
        "calibration": {
            "fpr_target": config.fpr,
            "negatives": len(negatives),
            "measured_fpr": float((negatives >= z).mean()),
            "positives": len(positives),
            "measured_recall": float((positives >= z).mean()),
            "on": "harmless_val",
        },
        "auroc": best["auroc"],
    }
    save_probe(out / "probe.safetensors", probe, meta)
    summary = {
        "sets": {name: len(texts) for name, texts in sets.items()},
        "site": config.site,
        "position": config.position,
        "fpr": config.fpr,
        "layers": rows,
        "best": {"layer": best["layer"], "probe": best["probe"], "site": site, "selected_by": "validation AUROC"},
        "export": meta,
    }
    atomic_write_json(out / "probes.json", summary)
    _write_probe_report(out, summary, config)
    console.print(
        f"best: {best['probe']} at {site}: AUROC {best['auroc']['value']:.3f} "
        f"[{best['auroc']['low']:.3f}, {best['auroc']['high']:.3f}], recall at {config.fpr:.0%} FPR "
        f"{best['recall_at_fpr']['value']:.1%}; probe: {out / 'probe.safetensors'}",
        highlight=False,
    )
    return summary


def _write_probe_report(out: Path, summary: dict[str, Any], config: Any) -> None:
    from tether.report.html import page, paragraph, section, table, write_html

    def band(metric: str) -> dict[str, list[tuple[float, float, float, float]]]:
        series: dict[str, list[tuple[float, float, float, float]]] = {}
        for row in summary["layers"]:
            e = row[metric]
            series.setdefault(row["probe"], []).append((row["layer"], e["value"], e["low"], e["high"]))
        return series

    fpr = f"{summary['fpr']:.0%}"
    rows = [
        (
            r["layer"],
            r["probe"],
            f"{r['auroc']['value']:.3f} [{r['auroc']['low']:.3f}, {r['auroc']['high']:.3f}]",
            f"{r['recall_at_fpr']['value']:.1%} [{r['recall_at_fpr']['low']:.1%}, {r['recall_at_fpr']['high']:.1%}]",
            f"{r['val_accuracy_at_train_threshold']:.1%}",
            r["fit"].get("C", ""),
        )
        for r in summary["layers"]
    ]
    best, export = summary["best"], summary["export"]
    html = page(
        f"Linear probes: harmful vs harmless requests ({config.model})",
        [
            section(
                "Data",
                paragraph(
                    ", ".join(f"{k}: {v}" for k, v in summary["sets"].items())
                    + f". Features: {summary['site']} at every layer, position {summary['position']}. Probes fit on "
                    "the train sets, scored on the val sets; 95% stratified bootstrap intervals."
                ),
            ),
            section(
                "Per layer",
                band_chart(band("auroc"), "AUROC per layer", "layer", "AUROC"),
                band_chart(band("recall_at_fpr"), f"recall at {fpr} FPR per layer", "layer", "recall"),
                table(["layer", "probe", "AUROC", f"recall at {fpr} FPR", "val accuracy (train threshold)", "C"], rows),
            ),
            section(
                "Exported probe",
                paragraph(
                    f"{best['probe']} at {best['site']} (highest validation AUROC), threshold "
                    f"{export['threshold']:.6f} (logit {export['threshold_logit']:.3f}) at {fpr} FPR on "
                    f"{export['calibration']['negatives']} held-out harmless instructions (measured FPR "
                    f"{export['calibration']['measured_fpr']:.2%}, recall "
                    f"{export['calibration']['measured_recall']:.1%}). "
                    "Load it in the guard as detector activation_probe with options: {artifact: probe.safetensors}."
                ),
            ),
        ],
    )
    write_html(out / "report.html", html)
