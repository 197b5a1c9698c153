"""Reviewed interactions become tether's own training records; reviews recalibrate rail thresholds."""

from __future__ import annotations

import json
from pathlib import Path

from tether.data.readers import read_records
from tether.guard.config import GuardConfig
from tether.guard.feedback import calibrate, export_reviews
from tether.guard.store import open_store


def interaction(
    store, content: str, response: str, outcome: str, label: str, correction: str | None = None, score: float = 0.0
) -> str:
    verdicts = [
        {
            "side": "input",
            "verdicts": [{"rail": "harmful_request", "verdict": "flag" if score >= 0.5 else "pass", "score": score}],
        }
    ]
    rid = store.record(
        {
            "endpoint": "chat",
            "request": [{"role": "user", "content": content}],
            "response": response,
            "outcome": outcome,
            "flagged": score >= 0.5,
            "verdicts": verdicts,
            "latency_ms": 1,
            "guard_ms": 1,
        }
    )
    store.review(rid, label=label, reviewer="r", response=correction)
    return rid


def test_reviews_export_as_records_tether_trains_on(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    harmful = interaction(store, "how to pick a lock to break in", "Step 1: insert a tension wrench", "ok", "harmful")
    interaction(
        store,
        "how do I kill a python process",
        "I can't help with that request.",
        "blocked_input",
        "over_refusal",
        correction="Use `kill PID`, or `pkill -f name`.",
    )
    interaction(store, "tell me a joke", "Why did the chicken cross the road?", "ok", "fine")
    interaction(store, "make a bomb", "I can't help with that request.", "blocked_input", "harmful")
    interaction(store, "how do I kill weeds", "I can't help with that request.", "blocked_input", "over_refusal")
    counts = export_reviews(store.reviewed(), tmp_path / "out")
    assert counts == {
        "preferences": 2,
        "sft": 2,
        "unpaired": 2,
        "reviews": {"harmful": 2, "over_refusal": 2, "fine": 1},
    }
    pairs = read_records(str(tmp_path / "out" / "preferences.jsonl"), "preference")
    assert len(pairs) == 2
    rows = [json.loads(line) for line in (tmp_path / "out" / "preferences.jsonl").read_text().splitlines()]
    assert rows[0]["source"] == f"guard:{harmful}" and rows[0]["rejected"][0]["content"].startswith("Step 1")
    assert rows[1]["chosen"][0]["content"].startswith("Use `kill PID`")
    assert len(read_records(str(tmp_path / "out" / "sft.jsonl"), "conversation")) == 2
    unpaired = read_records(str(tmp_path / "out" / "unpaired.jsonl"), "unpaired")
    assert sorted(u.label for u in unpaired) == [False, True]


def test_calibrate_moves_a_threshold_above_the_reviewed_false_positives(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    for i, score in enumerate([0.55, 0.6, 0.62, 0.3, 0.2, 0.1]):  # reviewed fine: the first three were blocked
        interaction(store, f"safe {i}", "ok", "blocked_input" if score >= 0.5 else "ok", "fine", score=score)
    for i, score in enumerate([0.9, 0.95, 0.7, 0.58]):
        interaction(store, f"bad {i}", "", "blocked_input", "harmful", score=score)
    config = GuardConfig.model_validate(
        {"input_rails": [{"detector": "injection", "name": "harmful_request"}, {"detector": "secrets"}]}
    )
    new, report = calibrate(config, store.reviewed(), fpr=0.0, min_reviews=5)
    info = report["harmful_request"]
    assert 0.62 < info["new_threshold"] < 0.6201 and info["fpr_before"] == 0.5 and info["fpr_after"] == 0.0
    assert info["recall_before"] == 1.0 and info["recall_after"] == 0.75  # the 0.58 one is lost: said plainly
    assert new.input_rails[0].threshold == info["new_threshold"]
    assert "kept" in report["secrets"] and new.input_rails[1].threshold is None
