"""``tether guard train``: the guard's linear probes and jailbreak index, each calibrated on held-out data.

Each class's texts are split by a hash of the text (stable across runs and machines) into a training part and
a calibration part (``calibration_share``). The harmful-request probe is scikit-learn's logistic regression
(class-balanced, L2, ``C``) on the packaged MiniLM's pooled layers (:mod:`tether.guard.encoder`) of the
training part; the jailbreak probe is the same on windows of the training jailbreaks against the same
harmless texts; the jailbreak index holds the sentence embeddings of those windows. The rails block together,
so each threshold is the smallest score at which at most ``fpr / k`` of the calibration harmless texts are
flagged (k rails: a union bound keeps them together at or under ``fpr``, reported as ``together``); the report gives
recall on the calibration harmful texts (or jailbreaks) at that threshold, none of which were trained on, and
the AUROC. Writes ``harmful_request.safetensors``, ``jailbreak_classifier.safetensors``,
``jailbreak_index.safetensors``, ``train_report.json`` and a ``guard.yaml`` that uses them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import yaml

from tether.atomic import atomic_write_json, atomic_write_text
from tether.errors import DataError
from tether.guard.artifacts import save_artifact
from tether.guard.config import GuardTrainConfig
from tether.guard.detectors.embedded import windows
from tether.guard.encoder import FEATURES, probe_features, sentence_embedding
from tether.guard.texts import read_texts

EMBEDDING_DEADLINE_MS = 2000.0


def held_out(text: str, share: float) -> bool:
    """True for the calibration part: a stable hash of the text, not a random draw."""
    digest = hashlib.sha256(text.strip().lower().encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def _read_all(files: Sequence[str], origin: dict[str, int] | None = None) -> list[str]:
    """Distinct texts of the files, in order; ``origin`` gets each text's file (the first that has it)."""
    out: dict[str, None] = {}
    for index, file in enumerate(files):
        for row in read_texts(file):
            text = row.text.strip()
            if text and text not in out:
                out[text] = None
                if origin is not None:
                    origin[text] = index
    return list(out)


def file_weights(texts: Sequence[str], origin: dict[str, int]) -> list[float]:
    """Per-text weights that give every file the same total weight, with mean 1."""
    counts: dict[int, int] = {}
    for text in texts:
        counts[origin.get(text, -1)] = counts.get(origin.get(text, -1), 0) + 1
    raw = [1.0 / counts[origin.get(t, -1)] for t in texts]
    scale = len(texts) / sum(raw)
    return [w * scale for w in raw]


def threshold_at_fpr(negative_scores: torch.Tensor, fpr: float) -> float:
    """The smallest threshold that flags at most ``fpr`` of the negatives (score >= threshold flags)."""
    ordered = torch.sort(negative_scores, descending=True).values
    allowed = math.floor(fpr * len(ordered))
    if allowed >= len(ordered):
        return float(ordered[-1])
    # Just above the (allowed+1)-th highest negative score.
    return float(torch.nextafter(ordered[allowed], torch.tensor(float("inf"))))


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    from sklearn.metrics import roc_auc_score

    labels = [1] * len(positive) + [0] * len(negative)
    return float(roc_auc_score(labels, torch.cat([positive, negative]).tolist()))


def _rates(positive: torch.Tensor, negative: torch.Tensor, threshold: float) -> dict[str, Any]:
    return {
        "threshold": threshold,
        "recall": float((positive >= threshold).float().mean()) if len(positive) else None,
        "fpr": float((negative >= threshold).float().mean()),
        "auroc": auroc(positive, negative) if len(positive) else None,
        "positives": len(positive),
        "negatives": len(negative),
    }


def train_guard(
    config: GuardTrainConfig, *, embed: Callable[[Sequence[str]], torch.Tensor] | None = None, console: Any = None
) -> dict[str, Any]:
    """Train, calibrate, write; returns the report (also written as train_report.json)."""
    from sklearn.linear_model import LogisticRegression

    from tether.report.progress import steps

    origin: dict[str, int] = {}
    harmful = _read_all(config.harmful, origin)
    harmless = _read_all(config.harmless, origin)
    harmless = sorted(harmless, key=lambda t: hashlib.sha256(t.encode()).hexdigest())[: config.max_harmless]
    overlap = set(harmful) & set(harmless)
    if overlap:
        raise DataError(
            f"{len(overlap)} texts are in both the harmful and harmless files, e.g. {next(iter(overlap))!r}"
        )
    jailbreaks = _read_all(config.jailbreaks)
    if embed is None:
        from tether.guard.encoder import default_encoder

        embed = default_encoder()
    share = config.calibration_share
    split = {
        name: ([t for t in texts if not held_out(t, share)], [t for t in texts if held_out(t, share)])
        for name, texts in (("harmful", harmful), ("harmless", harmless), ("jailbreaks", jailbreaks))
    }
    for name in ("harmful", "harmless"):
        if len(split[name][0]) < 5 or len(split[name][1]) < 5:
            raise DataError(
                f"too few {name} texts ({len(harmful if name == 'harmful' else harmless)}) to train and calibrate"
            )
    jailbreak_windows = [w for t in split["jailbreaks"][0] for w in windows(t)]
    every = [t for parts in split.values() for part in parts for t in part] + jailbreak_windows
    every = list(dict.fromkeys(every))
    vectors: dict[str, torch.Tensor] = {}
    with steps(console, "embed", len(every), enabled=config.progress and console is not None) as bar:
        for start in range(0, len(every), 256):
            chunk = every[start : start + 256]
            for text, row in zip(chunk, embed(chunk), strict=True):
                vectors[text] = row
            bar.advance(len(chunk))

    shape = next(iter(vectors.values())).shape

    def features(texts: Sequence[str]) -> torch.Tensor:
        return torch.stack([vectors[t] for t in texts]) if texts else torch.zeros(0, *shape)

    def matrix(texts: Sequence[str]) -> torch.Tensor:
        return sentence_embedding(features(texts))

    def probe(texts: Sequence[str]) -> torch.Tensor:
        return probe_features(features(texts))

    def fit(positive: Sequence[str], negative: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([probe(positive), probe(negative)])
        y = [1] * len(positive) + [0] * len(negative)
        weights = None
        if config.balance_files:
            weights = file_weights(positive, origin) + file_weights(negative, origin)
        model = LogisticRegression(C=config.c, class_weight="balanced", max_iter=3000)
        model.fit(x.numpy(), y, sample_weight=weights)
        return torch.tensor(model.coef_[0], dtype=torch.float32), torch.tensor(model.intercept_, dtype=torch.float32)

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "fpr_target": config.fpr,
        "calibration_share": share,
        "split": {k: {"train": len(v[0]), "calibration": len(v[1])} for k, v in split.items()},
        "sources": {"harmful": config.harmful, "harmless": config.harmless, "jailbreaks": config.jailbreaks},
        "features": FEATURES,
    }
    calibration_negatives = split["harmless"][1]
    # The rails block together, so they share the false-positive budget: each gets fpr / k (a union bound).
    rails_sharing = 3 if split["jailbreaks"][0] else 1
    rail_fpr = config.fpr / rails_sharing
    report["rail_fpr"] = rail_fpr

    probes: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def write_probe(name: str, positive: str, train_pos: Sequence[str], cal_pos: Sequence[str]) -> str:
        weight, bias = fit(train_pos, split["harmless"][0])
        probes[name] = (weight, bias)
        pos = torch.sigmoid(probe(cal_pos) @ weight + bias)
        neg = torch.sigmoid(probe(calibration_negatives) @ weight + bias)
        threshold = threshold_at_fpr(neg, rail_fpr)
        report[name] = _rates(pos, neg, threshold)
        meta = {"threshold": threshold, "calibration": report[name], "features": FEATURES, "positive": positive}
        path = out / f"{name}.safetensors"
        save_artifact(path, "linear-probe", {"weight": weight, "bias": bias}, meta)
        return str(path)

    rails: list[dict[str, Any]] = [
        {"detector": "blocklist", "action": "block", "options": {"words": [], "patterns": []}},
        {"detector": "secrets", "action": "mask"},
        {"detector": "pii", "action": "mask"},
        {"detector": "injection", "action": "block"},
        {"detector": "obfuscation", "action": "log"},
    ]
    path = write_probe("harmful_request", "harmful request", split["harmful"][0], split["harmful"][1])
    # The embedding rails share one MiniLM pass per request; on a loaded CPU a long prompt takes far more than
    # the 250 ms default, and a missed deadline blocks (on_error: closed), so they get more time.
    slow = {"deadline_ms": EMBEDDING_DEADLINE_MS}
    rails.append({"detector": "harmful_request", "action": "block", **slow, "options": {"artifact": path}})
    if split["jailbreaks"][0]:
        index = matrix(jailbreak_windows)
        sim_neg = (matrix(calibration_negatives) @ index.T).max(dim=1).values.clamp(min=0)
        sim_pos = (matrix(split["jailbreaks"][1]) @ index.T).max(dim=1).values.clamp(min=0)
        sim_threshold = threshold_at_fpr(sim_neg, rail_fpr)
        report["jailbreak_similarity"] = _rates(sim_pos, sim_neg, sim_threshold)
        report["jailbreak_similarity"]["index_rows"] = len(index)
        meta = {"threshold": sim_threshold, "calibration": report["jailbreak_similarity"], "features": FEATURES}
        save_artifact(out / "jailbreak_index.safetensors", "jailbreak-index", {"embeddings": index.half()}, meta)
        rails.append(
            {
                "detector": "jailbreak_similarity",
                "action": "block",
                **slow,
                "options": {"artifact": str(out / "jailbreak_index.safetensors")},
            }
        )
        path = write_probe("jailbreak_classifier", "jailbreak", jailbreak_windows, split["jailbreaks"][1])
        rails.append({"detector": "jailbreak_classifier", "action": "block", **slow, "options": {"artifact": path}})
    flagged = torch.zeros(len(calibration_negatives), dtype=torch.bool)
    for name in ("harmful_request", "jailbreak_classifier"):
        if name in report:
            weight, bias = probes[name]
            flagged |= torch.sigmoid(probe(calibration_negatives) @ weight + bias) >= report[name]["threshold"]
    if "jailbreak_similarity" in report:
        flagged |= sim_neg >= report["jailbreak_similarity"]["threshold"]
    report["together"] = {"fpr": float(flagged.float().mean()), "negatives": len(calibration_negatives)}
    guard = {
        "command": "guard",
        "input_rails": rails,
        "output_rails": [
            {"detector": "secrets", "action": "mask"},
            {"detector": "pii", "action": "mask"},
            {"detector": "toxicity", "action": "block"},
            {
                "detector": "output_judge",
                "action": "log",
                "deadline_ms": 2000.0,
                "on_error": "open",
                "options": {"flag_on": "compliance_when_flagged"},
            },
        ],
    }
    atomic_write_text(out / "guard.yaml", yaml.safe_dump(guard, sort_keys=False))
    atomic_write_json(out / "train_report.json", report)
    return report
