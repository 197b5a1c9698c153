"""The demo's plumbing on a tiny random model (the real run is `make demo`)."""

from __future__ import annotations

import json

from tether.demo.dataset import load_demo_prompts


def test_shipped_demo_prompts_are_consistent():
    train, heldout = load_demo_prompts("train"), load_demo_prompts("heldout")
    assert {p.kind for p in train} == {p.kind for p in heldout} == {"harmful", "benign", "borderline"}
    assert all((p.refusal is not None) == (p.kind == "harmful") for p in train)
    assert not {p.prompt for p in train} & {p.prompt for p in heldout}, "held-out prompts leak into training"


def test_on_policy_pairs_follow_the_judge():
    from tether.demo.run import WRITTEN_REFUSALS, on_policy_pairs

    train = load_demo_prompts("train")
    harmful = next(p for p in train if p.kind == "harmful")
    benign = next(p for p in train if p.kind == "benign")
    rows = on_policy_pairs(
        [harmful, benign, benign],
        [
            ["Sure, here is how.", "I can't help with that."],  # only the compliant sample makes a pair
            ["Here you go: step one...", ""],  # empty samples are skipped
            ["I'm sorry, but I won't.", "Happy to help: first..."],  # the model's own refusal is rejected
        ],
    )
    assert rows == [
        {"prompt": harmful.prompt, "chosen": harmful.refusal, "rejected": "Sure, here is how."},
        {"prompt": benign.prompt, "chosen": "Here you go: step one...", "rejected": WRITTEN_REFUSALS[1]},
        {"prompt": benign.prompt, "chosen": "Happy to help: first...", "rejected": "I'm sorry, but I won't."},
    ]


def test_verdict_applies_the_demo_bar():
    from tether.demo.run import verdict

    before = {"harmful_compliance": 0.8, "benign_refusal": 0.1, "borderline_refusal": 0.0}
    good = {"harmful_compliance": 0.4, "benign_refusal": 0.2, "borderline_refusal": 0.1}
    assert verdict({"before": before, "after": good}) == {
        "harmful_compliance_halved": True,
        "benign_refusal_within_10_points": True,
        "borderline_refusal_within_10_points": True,
    }
    bad = {"harmful_compliance": 0.41, "benign_refusal": 0.21, "borderline_refusal": 0.11}
    assert not any(verdict({"before": before, "after": bad}).values())


def test_demo_runs_end_to_end_on_a_tiny_model(tmp_path, tiny_model_dir):
    from rich.console import Console

    from tether.config import DemoConfig
    from tether.demo.run import run_demo

    config = DemoConfig(
        model=str(tiny_model_dir), out=tmp_path / "demo", steps=2, samples=1, max_new_tokens=4, batch_size=4
    )
    with open(tmp_path / "log.txt", "w") as log_file:
        result = run_demo(config, console=Console(file=log_file, width=160))
    saved = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    rates = {"harmful_compliance", "benign_refusal", "borderline_refusal", "unscored"}
    assert saved["rates"]["before"].keys() == saved["phrase_judge_rates"]["after"].keys() == rates
    assert saved["judge"] == "phrases+classifier"
    assert len(saved["heldout"]) == len(load_demo_prompts("heldout"))
    assert result["rates"] == saved["rates"] and saved["pairs"] > 0
    assert (tmp_path / "demo" / "dpo" / "model" / "adapter_config.json").is_file()  # LoRA by default
    report = (tmp_path / "demo" / "report.html").read_text()
    assert "<svg" in report and "harmful requests complied with" in report
    log = (tmp_path / "log.txt").read_text()
    assert "before" in log and "after" in log and "checks:" in log
