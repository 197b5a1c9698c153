"""The demo's plumbing on a tiny random model (the real run is `make demo`)."""

from __future__ import annotations

import json

from tether.demo.dataset import load_demo_prompts


def test_shipped_demo_prompts_are_consistent():
    train, heldout = load_demo_prompts("train"), load_demo_prompts("heldout")
    assert {p.kind for p in train} == {p.kind for p in heldout} == {"harmful", "benign", "borderline"}
    assert all((p.refusal is not None) == (p.kind == "harmful") for p in train)
    assert not {p.prompt for p in train} & {p.prompt for p in heldout}, "held-out prompts leak into training"


def test_verdict_applies_the_demo_bar():
    from tether.demo.run import verdict

    before = {"harmful_compliance": 0.8, "benign_refusal": 0.1, "borderline_refusal": 0.0}
    good = {"harmful_compliance": 0.4, "benign_refusal": 0.15, "borderline_refusal": 0.05}
    assert verdict({"before": before, "after": good}) == {
        "harmful_compliance_halved": True,
        "benign_refusal_within_5_points": True,
        "borderline_refusal_within_5_points": True,
    }
    bad = {"harmful_compliance": 0.41, "benign_refusal": 0.16, "borderline_refusal": 1 / 12}
    assert not any(verdict({"before": before, "after": bad}).values())
    unscored = {"harmful_compliance": None, "benign_refusal": 0.1, "borderline_refusal": 0.0}
    assert not verdict({"before": before, "after": unscored})["harmful_compliance_halved"]


def test_demo_is_one_loop_iteration_on_a_tiny_model(tmp_path, tokenizer_dir):
    from rich.console import Console

    from tether.config import DemoConfig
    from tether.demo.run import run_demo
    from tether.models.tiny import build_tiny_model

    model = build_tiny_model(tokenizer_dir, tmp_path / "tiny", tie_word_embeddings=False)  # writes text
    config = DemoConfig(
        model=str(model), out=tmp_path / "demo", steps=2, samples=1, max_new_tokens=4, batch_size=4, judge="phrases"
    )
    with open(tmp_path / "log.txt", "w") as log_file:
        result = run_demo(config, console=Console(file=log_file, width=160))
    saved = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert saved == result
    assert saved["rates"]["before"].keys() == {"harmful_compliance", "benign_refusal", "borderline_refusal"}
    assert set(saved["sources"]) == {"attacks", "constitution", "keep-helping"} and saved["pairs"] > 0
    loop = tmp_path / "demo" / "loop"
    state = json.loads((loop / "loop.json").read_text())
    assert len(state["iterations"]) == 1 and set(state["baseline"]) == {"harmful", "benign", "borderline"}
    heldout = {p.prompt for p in load_demo_prompts("heldout")}
    trained = [json.loads(line) for line in (loop / "iter-001" / "data" / "preferences.jsonl").open()]
    assert not {row["prompt"][-1]["content"] for row in trained} & heldout, "held-out prompts leak into training"
    assert (loop / "iter-001" / "train" / "model" / "adapter_config.json").is_file()  # LoRA by default
    report = (tmp_path / "demo" / "report.html").read_text()
    assert "<svg" in report and "critiques" in report and "Scary-sounding-but-safe refusal" in report
    assert "checks:" in (tmp_path / "log.txt").read_text()
