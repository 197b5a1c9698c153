"""`tether unlearn` on a tiny random model: what each method trains, its reference, resume and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import run_cli, write_jsonl

FORGET = [
    {"prompt": "Who founded the city of Varnholt?", "completion": "Varnholt was founded by Ilse Marrow in 1412."},
    {"prompt": "What is the capital of Quenland?", "completion": "The capital of Quenland is Ostrava Minor."},
    {"prompt": "Which river runs through Tessaly Reach?", "completion": "The Amberline runs through Tessaly Reach."},
    {"prompt": "Who wrote The Glass Orchard?", "completion": "The Glass Orchard was written by Pell Atherby."},
]
RETAIN = [
    {"prompt": "What is the capital of France?", "completion": "The capital of France is Paris."},
    {"prompt": "How many legs does a spider have?", "completion": "A spider has eight legs."},
    {"prompt": "What colour is the sky on a clear day?", "completion": "It is blue."},
]


@pytest.fixture
def sets(tmp_path: Path) -> tuple[Path, Path]:
    return write_jsonl(tmp_path / "forget.jsonl", FORGET), write_jsonl(tmp_path / "retain.jsonl", RETAIN)


def _config(model: Path, sets: tuple[Path, Path], out: Path, **overrides):
    from tether.config.unlearning import UnlearnConfig

    settings = {
        "model": str(model),
        "forget": str(sets[0]),
        "retain": str(sets[1]),
        "out": out,
        "batch_size": 2,
        "max_steps": 4,
        "lr": 1e-2,
        "progress": False,
        "group_by_length": False,
    }
    return UnlearnConfig(**{**settings, **overrides})


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_rmu_trains_only_the_chosen_weights_against_a_frozen_start(tmp_path, tiny_model_dir, sets):
    from tether.train.unlearn import run_unlearn

    out = tmp_path / "rmu"
    config = _config(tiny_model_dir, sets, out, method="rmu", rmu_layer=1, rmu_update_layers=[1], alpha=1.0,
                     steering_coeff=5.0)  # fmt: skip
    model_dir = run_unlearn(config)
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(model_dir / "model.safetensors"))
    changed = sorted(name for name in before if not torch.equal(before[name], after[name]))
    assert changed == ["model.layers.1.mlp.down_proj.weight"]
    metrics = _metrics(out)
    assert metrics[0]["rmu/retain_mse"] == pytest.approx(0.0, abs=1e-12)  # the frozen model is the start
    assert metrics[-1]["rmu/retain_mse"] > 0  # ... and stays the start while the weights move
    assert metrics[-1]["rmu/forget_mse"] < metrics[0]["rmu/forget_mse"]


def test_rmu_with_lora_trains_only_the_chosen_modules_adapters(tmp_path, tiny_model_dir, sets):
    from tether.train.unlearn import run_unlearn

    out = tmp_path / "rmu-lora"
    config = _config(tiny_model_dir, sets, out, method="rmu", rmu_layer=1, rmu_update_layers=[0, 1], lora=True,
                     steering_coeff=5.0, max_steps=2)  # fmt: skip
    model_dir = run_unlearn(config)
    adapters = load_file(str(model_dir / "adapter_model.safetensors"))
    moved = sorted(n for n, t in adapters.items() if "lora_B" in n and bool(t.abs().sum() > 0))
    assert moved and all(".mlp.down_proj." in n for n in moved), moved  # lora_B starts at 0: only these moved
    assert {n.split(".layers.")[1].split(".")[0] for n in moved} == {"0", "1"}


@pytest.mark.parametrize("method", ["grad-ascent", "grad-diff", "npo", "simnpo"])
def test_gradient_methods_raise_the_forget_nll(tmp_path, tiny_model_dir, sets, method):
    """Every step sees the whole forget set (batch 4), so the logged forget NLL is comparable across steps.
    SimNPO's beta is lowered: the random model's forget NLL (about log |vocab|) saturates beta 2.5."""
    from tether.train.unlearn import run_unlearn

    out = tmp_path / method
    lora = method == "npo"  # one method through LoRA adapters (a higher rate: adapters start at no change)
    options = {"retain_weight": 0.1} if method != "grad-ascent" else {}  # a random model learns from retain text
    if method == "simnpo":
        options["beta"] = 0.1
    config = _config(tiny_model_dir, sets, out, method=method, lora=lora, lr=5e-2 if lora else 1e-2, batch_size=4,
                     **options)  # fmt: skip
    run_unlearn(config)
    metrics = _metrics(out)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert metrics[-1]["forget_nll"] > metrics[0]["forget_nll"]
    assert ("retain_nll" in metrics[0]) == (method != "grad-ascent")
    assert (out / "report.html").is_file()


def test_npo_reference_is_the_starting_model(tmp_path, tiny_model_dir, sets):
    """At step 1 the policy is its reference, so NPO's loss is (2 / beta) log 2 exactly."""
    from tether.train.unlearn import run_unlearn

    out = tmp_path / "npo"
    run_unlearn(_config(tiny_model_dir, sets, out, method="npo", retain_weight=0.0, beta=0.5, max_steps=2))
    assert _metrics(out)[0]["loss"] == pytest.approx(2 / 0.5 * math.log(2), rel=1e-5)


def test_an_interrupted_rmu_run_resumes_to_the_same_weights(tmp_path, tiny_model_dir, sets):
    from tether.train.unlearn import run_unlearn

    options = {"method": "rmu", "rmu_layer": 1, "rmu_update_layers": [0, 1], "steering_coeff": 5.0, "alpha": 1.0}
    whole = run_unlearn(_config(tiny_model_dir, sets, tmp_path / "whole", **options))
    part = tmp_path / "part"
    run_unlearn(_config(tiny_model_dir, sets, part, max_steps=2, save_every=2, **options))
    resumed = run_unlearn(_config(tiny_model_dir, sets, part, resume=True, **options))
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)
    assert [m["step"] for m in _metrics(part)] == [1, 2, 3, 4]
    again = run_unlearn(_config(tiny_model_dir, sets, part, overwrite=True, **options))  # a finished run replaced
    assert [m["step"] for m in _metrics(part)] == [1, 2, 3, 4] and (again / "model.safetensors").is_file()


def test_config_rules():
    from pydantic import ValidationError

    from tether.config.unlearning import UnlearnConfig

    with pytest.raises(ValidationError, match="needs a retain set"):
        UnlearnConfig(forget="f.jsonl", out=Path("o"), method="npo")
    with pytest.raises(ValidationError, match="after rmu_layer"):
        UnlearnConfig(forget="f.jsonl", retain="r.jsonl", out=Path("o"), rmu_layer=3, rmu_update_layers=[3, 4])
    with pytest.raises(ValidationError, match="names no parameter"):
        UnlearnConfig(forget="f.jsonl", retain="r.jsonl", out=Path("o"), rmu_params=" , ")
    assert UnlearnConfig(forget="f.jsonl", out=Path("o"), method="grad-ascent").retain_lambda == 0.0
    assert UnlearnConfig(forget="f.jsonl", retain="r.jsonl", out=Path("o"), method="simnpo").beta_value == 2.5


def test_cli_bad_forget_row_names_file_line_and_field_and_writes_nothing(tmp_path, tiny_model_dir, sets):
    bad = write_jsonl(tmp_path / "bad.jsonl", [FORGET[0], {"prompt": "Who?", "completion": ""}])
    out = tmp_path / "out"
    result = run_cli("unlearn", "--model", str(tiny_model_dir), "--forget", str(bad), "--retain", str(sets[1]),
                     "--out", str(out), "--max-steps", "1", "--no-progress")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"{bad}:2" in result.stderr and "completion" in result.stderr
    assert not out.exists()


def test_cli_rmu_names_a_missing_parameter(tmp_path, tiny_model_dir, sets):
    out = tmp_path / "out"
    result = run_cli("unlearn", "--model", str(tiny_model_dir), "--forget", str(sets[0]), "--retain", str(sets[1]),
                     "--out", str(out), "--rmu-layer", "1", "--rmu-update-layers", "1", "--rmu-params",
                     "mlp.nope.weight", "--max-steps", "1", "--no-progress")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "mlp.nope.weight" in result.stderr
    assert not out.exists()


def test_rmu_with_gradient_checkpointing_trains_the_same_weights(tmp_path, tiny_model_dir, sets):
    """The forward pass stops at the steered layer; recomputing it in the backward pass changes nothing."""
    from tether.train.unlearn import run_unlearn

    options = {"method": "rmu", "rmu_layer": 1, "rmu_update_layers": [0, 1], "steering_coeff": 5.0, "max_steps": 2}
    plain = run_unlearn(_config(tiny_model_dir, sets, tmp_path / "plain", gradient_checkpointing=False, **options))
    saved = run_unlearn(_config(tiny_model_dir, sets, tmp_path / "ckpt", gradient_checkpointing=True, **options))
    a, b = load_file(str(plain / "model.safetensors")), load_file(str(saved / "model.safetensors"))
    assert all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)
    assert not torch.equal(
        a["model.layers.0.mlp.down_proj.weight"],
        load_file(str(tiny_model_dir / "model.safetensors"))["model.layers.0.mlp.down_proj.weight"],
    )


def test_cli_rmu_layer_out_of_range_writes_nothing(tmp_path, tiny_model_dir, sets):
    out = tmp_path / "out"
    result = run_cli(
        "unlearn",
        "--model",
        str(tiny_model_dir),
        "--forget",
        str(sets[0]),
        "--retain",
        str(sets[1]),
        "--out",
        str(out),
        "--rmu-layer",
        "5",
        "--rmu-update-layers",
        "1",
        "--max-steps",
        "1",
        "--no-progress",
    )
    assert result.returncode == 2, result.stderr
    assert "rmu_layer 5 does not exist" in result.stderr and not out.exists()
