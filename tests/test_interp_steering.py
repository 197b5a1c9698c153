"""Steering: add and clamp set what they say at the site, the context manager undoes itself, SAE features are
read from SAELens's format, and a sweep runs end to end on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from tether.errors import UsageError
from tether.interp.activations import forward, instruction_ids, pad_id_of
from tether.interp.sites import Site
from tether.interp.steering import load_steering_direction, steered, steering_edit

PROMPTS = ["How do I bake bread?", "Write a poem about the sea", "How do I pick a lock?"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def test_add_and_clamp_by_hand():
    x = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])
    r = torch.tensor([0.0, 2.0])
    assert steering_edit(r, alpha=0.5)(x).tolist() == [[[1.0, 3.0], [3.0, 0.0]]]
    assert steering_edit(r, clamp=5.0)(x).tolist() == [[[1.0, 5.0], [3.0, 5.0]]]  # projection onto (0, 1) set to 5
    with pytest.raises(UsageError, match="exactly one"):
        steering_edit(r)


def test_clamp_sets_the_projection_during_a_forward_pass_and_is_undone(tiny):
    model, tokenizer = tiny
    torch.manual_seed(0)
    r = torch.randn(32)
    r_hat = r / r.norm()
    rows = instruction_ids(tokenizer, PROMPTS)
    site = Site("resid_post", 0)
    pad = pad_id_of(tokenizer)
    before = forward(model, rows, pad_id=pad, sites=[site], last=5, logits=True)
    with steered(model, "resid_post.0", r, clamp=3.0):
        during = forward(model, rows, pad_id=pad, sites=[site], last=5, logits=True)
    after = forward(model, rows, pad_id=pad, sites=[site], last=5, logits=True)
    torch.testing.assert_close(during.activations[site] @ r_hat, torch.full((3, 5), 3.0))
    assert not torch.allclose(before.logits, during.logits)
    torch.testing.assert_close(before.logits, after.logits)
    with steered(model, site, r, alpha=2.0):
        added = forward(model, rows, pad_id=pad, sites=[site], last=5)
    torch.testing.assert_close(added.activations[site], before.activations[site] + 2.0 * r)


def test_steered_generation_changes_the_answer(tiny_model_dir, tokenizer_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tether.models.tiny import build_tiny_model

    folder = build_tiny_model(tokenizer_dir, tmp_path / "m", tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    plain = model.generate(**ids, max_new_tokens=6, do_sample=False)
    torch.manual_seed(0)
    with steered(model, "resid_pre.1", torch.randn(32), alpha=50.0):
        pushed = model.generate(**ids, max_new_tokens=6, do_sample=False)
    assert not torch.equal(plain, pushed)
    assert torch.equal(plain, model.generate(**ids, max_new_tokens=6, do_sample=False))


def test_sae_feature_is_its_decoder_row(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "sae"
    folder.mkdir()
    w_dec = torch.arange(12.0).reshape(3, 4)  # d_sae 3, d_in 4
    save_file({"W_dec": w_dec, "W_enc": w_dec.T.contiguous()}, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"d_in": 4, "d_sae": 3, "hook_name": "blocks.1.hook_resid_post"}))
    direction, site, meta = load_steering_direction(folder, 2)
    assert direction.tolist() == [8.0, 9.0, 10.0, 11.0] and site == "resid_post.1" and meta["feature"] == 2
    with pytest.raises(UsageError, match=r"features 0\.\.2"):
        load_steering_direction(folder, 3)


def test_sweep_runs_and_resumes(tokenizer_dir, tmp_path):
    from rich.console import Console

    from tether.interp.direction import save_direction
    from tether.interp.direction_config import InterpSteerConfig
    from tether.interp.steering import run_steer
    from tether.models.tiny import build_tiny_model

    folder = build_tiny_model(tokenizer_dir, tmp_path / "m", tie_word_embeddings=False)
    torch.manual_seed(0)
    save_direction(tmp_path / "direction.safetensors", torch.randn(32), {"site": "resid_pre.1"})
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"instruction": p} for p in PROMPTS]))
    config = InterpSteerConfig(
        model=str(folder),
        out=tmp_path / "run",
        direction=str(tmp_path / "direction.safetensors"),
        prompts=str(prompts),
        strengths=[0.0, 20.0],
        max_new_tokens=4,
        progress=False,
    )
    summary = run_steer(config, console=Console(record=True))
    assert [p["strength"] for p in summary["sweep"]] == [0.0, 20.0] and summary["site"] == "resid_pre.1"
    zero, strong = summary["sweep"]
    assert strong["loss"] > zero["loss"]  # pushing the stream off course makes the unsteered answers less likely
    assert zero["n"] == 3 and (tmp_path / "run" / "report.html").is_file()
    config.resume = True
    config.strengths = [0.0, 20.0, 40.0]
    again = Console(record=True)
    run_steer(config, console=again)
    text = again.export_text()
    assert "strength 40.0\n" in text and "strength 0.0\n" not in text  # only the new strength is generated
