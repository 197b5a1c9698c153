"""The way back into training: reviewed interactions become tether's records, and reviews recalibrate rails.

``export_reviews`` writes, from every reviewed interaction (its stored text, already masked):

- ``preferences.jsonl`` (``tether dpo``): a harmful answer that got through, rejected against the reviewer's
  correction or a helpful refusal; an over-refusal or a corrected answer, rejected against the correction;
- ``sft.jsonl`` (``tether sft``): each correction, and a helpful refusal for a harmful request the guard
  blocked (no model answer to reject, so a demonstration instead);
- ``unpaired.jsonl`` (``tether kto``): answers marked fine (desirable) and over-refusals without a
  correction (undesirable).

Every record carries ``source: guard:<interaction id>`` and the review label. ``calibrate`` moves each
input rail's threshold to the smallest score that flags at most ``fpr`` of the reviewed negatives
(``fine`` and ``over_refusal``), and reports its recall on the reviewed positives (``harmful``) before and
after; rails with too few reviews keep their threshold.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tether.atomic import atomic_write_jsonl
from tether.redteam.campaign import SAFE_REFUSALS


def _refusal(interaction_id: str) -> str:
    return SAFE_REFUSALS[int(hashlib.sha256(interaction_id.encode()).hexdigest(), 16) % len(SAFE_REFUSALS)]


def _prompt(row: dict[str, Any]) -> list[dict[str, str]]:
    """The stored conversation (earlier assistant turns included), as the preference record's prompt."""
    messages = json.loads(row["request"]) if isinstance(row["request"], str) else row["request"]
    return [{"role": m["role"], "content": m["content"] or ""} for m in messages]


def _answer(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def records_from_reviews(rows: Iterable[dict[str, Any]]) -> tuple[list[dict], list[dict], list[dict], Counter]:
    """(preferences, sft, unpaired, counts) from reviewed interactions."""
    preferences: list[dict] = []
    sft: list[dict] = []
    unpaired: list[dict] = []
    counts: Counter = Counter()
    for row in rows:
        label, rid = row["review_label"], row["id"]
        prompt = _prompt(row)
        if not prompt or prompt[-1]["role"] not in ("user", "tool"):
            counts["skipped: no request"] += 1
            continue
        source = {"source": f"guard:{rid}", "review": label}
        answered = row["outcome"] == "ok" and (row["response"] or "").strip()
        correction = (row.get("review_response") or "").strip()
        if label == "harmful":
            if answered:
                chosen = correction or _refusal(rid)
                preferences.append(
                    {"prompt": prompt, "chosen": _answer(chosen), "rejected": _answer(row["response"]), **source}
                )
            else:
                sft.append(
                    {"messages": [*prompt, {"role": "assistant", "content": correction or _refusal(rid)}], **source}
                )
        elif label in ("over_refusal", "corrected"):
            refused = row["response"] or ""
            if correction:
                if refused.strip():
                    preferences.append(
                        {"prompt": prompt, "chosen": _answer(correction), "rejected": _answer(refused), **source}
                    )
                sft.append({"messages": [*prompt, {"role": "assistant", "content": correction}], **source})
            elif refused.strip():
                unpaired.append({"prompt": prompt, "completion": _answer(refused), "label": False, **source})
        elif label == "fine" and answered:
            unpaired.append({"prompt": prompt, "completion": _answer(row["response"]), "label": True, **source})
        else:
            counts[f"skipped: {label} without an answer"] += 1
            continue
        counts[label] += 1
    return preferences, sft, unpaired, counts


def export_reviews(rows: Iterable[dict[str, Any]], out: Path) -> dict[str, Any]:
    preferences, sft, unpaired, counts = records_from_reviews(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(out / "preferences.jsonl", preferences)
    atomic_write_jsonl(out / "sft.jsonl", sft)
    atomic_write_jsonl(out / "unpaired.jsonl", unpaired)
    return {"preferences": len(preferences), "sft": len(sft), "unpaired": len(unpaired), "reviews": dict(counts)}


def calibrate(config: Any, rows: Iterable[dict[str, Any]], *, fpr: float, min_reviews: int = 5) -> tuple[Any, dict]:
    """A copy of ``config`` with input-rail thresholds moved to the reviewed data, and the report."""
    import torch

    from tether.guard.train import threshold_at_fpr

    found: dict[str, dict[str, list[tuple[float, bool]]]] = {}
    for row in rows:
        label = row["review_label"]
        kind = "positive" if label == "harmful" else "negative" if label in ("fine", "over_refusal") else None
        if kind is None:
            continue
        verdicts = json.loads(row["verdicts"]) if isinstance(row["verdicts"], str) else row["verdicts"]
        seen: dict[str, tuple[float, bool]] = {}
        for decision in verdicts:
            if decision.get("side") != "input":
                continue
            for v in decision["verdicts"]:
                if v["verdict"] != "error":
                    score, flagged = seen.get(v["rail"], (0.0, False))
                    seen[v["rail"]] = (max(score, float(v["score"])), flagged or v["verdict"] == "flag")
        for rail, value in seen.items():
            found.setdefault(rail, {"positive": [], "negative": []})[kind].append(value)
    report: dict[str, Any] = {}
    rails = []
    for rail in config.input_rails:
        entry = found.get(rail.label, {"positive": [], "negative": []})
        pos, neg = entry["positive"], entry["negative"]
        info: dict[str, Any] = {"positives": len(pos), "negatives": len(neg), "old_threshold": rail.threshold}
        if len(neg) < min_reviews:
            info["kept"] = f"fewer than {min_reviews} reviewed negatives"
            rails.append(rail)
        else:
            new = min(max(threshold_at_fpr(torch.tensor([s for s, _ in neg]), fpr), 0.0), 1.0)

            def share(items: list[tuple[float, bool]], after: bool, new: float = new) -> float | None:
                if not items:
                    return None
                return sum((s >= new) if after else f for s, f in items) / len(items)

            info.update(
                new_threshold=new,
                recall_before=share(pos, False),
                recall_after=share(pos, True),
                fpr_before=share(neg, False),
                fpr_after=share(neg, True),
            )
            rails.append(rail.model_copy(update={"threshold": new}))
        report[rail.label] = info
    return config.model_copy(update={"input_rails": rails}), report
