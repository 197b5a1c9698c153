"""The demo's plumbing on a tiny random model (the real run is `make demo`)."""

from __future__ import annotations

import json

from tether.demo.dataset import load_demo_prompts


def test_shipped_demo_prompts_are_consistent():
    train, heldout = load_demo_prompts("train"), load_demo_prompts("heldout")
    assert {p.kind for p in train} == {p.kind for p in heldout} == {"harmful", "benign", "borderline"}
    assert all((p.refusal is not None) == (p.kind == "harmful") for p in train)
    assert not {p.prompt for p in train} & {p.prompt for p in heldout}, "held-out prompts leak into training"


def test_demo_runs_end_to_end_on_a_tiny_model(tmp_path, tiny_model_dir):
    from rich.console import Console

    from tether.config import DemoConfig
    from tether.demo.run import run_demo

    config = DemoConfig(model=str(tiny_model_dir), out=tmp_path / "demo", steps=2, max_new_tokens=4, batch_size=4)
    with open(tmp_path / "log.txt", "w") as log_file:
        result = run_demo(config, console=Console(file=log_file, width=160))
    saved = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert saved["refusal_rate_before"].keys() == {"harmful", "benign", "borderline"}
    assert len(saved["heldout"]) == len(load_demo_prompts("heldout"))
    assert result["refusal_rate_after"] == saved["refusal_rate_after"]
    assert (tmp_path / "demo" / "sft" / "model" / "model.safetensors").is_file()  # all weights by default
    assert (tmp_path / "demo" / "config.yaml").is_file()
    log = (tmp_path / "log.txt").read_text()
    assert "before" in log and "after" in log
