"""Logit lens and activation patching on tiny models: the last layer's lens is the model's output, patching the
clean activation where it determines the answer restores the clean metric exactly, bad inputs fail before any
model loads; nnsight (when installed) reads and patches the same values."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tether.errors import UsageError
from tether.interp.config import InterpLensConfig, InterpPatchConfig
from tether.interp.encode import encode
from tether.interp.hooks import recording
from tether.interp.lens import logit_lens, run_lens, unembed
from tether.interp.patching import make_pair, normalised, patch_grid, patched_logit_diffs, run_patch
from tether.interp.sites import KINDS, Site
from tether.report.plots import heatmap

CLEAN, CORRUPTED = "The capital of France is", "The capital of Italy is"


def _strict(path):
    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def wide(tmp_path_factory, tokenizer_dir):
    """A 3-layer random Llama with larger weights (logit differences far from 0), untied unembedding."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tether.models.tiny import build_tiny_model

    folder = build_tiny_model(
        tokenizer_dir, tmp_path_factory.mktemp("wide"), num_layers=3, initializer_range=0.2, tie_word_embeddings=False
    )
    return folder, AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def pair(wide):
    _, _, tokenizer = wide
    return make_pair(tokenizer, CLEAN, CORRUPTED, " Paris", " Rome")


def test_the_last_layers_lens_is_the_models_own_output(wide):
    _, model, tokenizer = wide
    ids = encode(tokenizer, [CLEAN])[0]
    with torch.no_grad(), recording(model, [Site("resid_post", 2)]) as seen:
        logits = model(input_ids=torch.tensor([ids])).logits
    torch.testing.assert_close(unembed(model, seen[Site("resid_post", 2)]), logits, rtol=0, atol=1e-6)
    lens = logit_lens(model, ids)
    assert lens.rows == ["embeddings", "0", "1", "2"] and lens.top_id.shape == (4, len(ids))
    assert torch.equal(lens.final_id, logits[0].argmax(-1))
    assert torch.equal(lens.top_id[-1], lens.final_id)
    assert lens.final_rank[-1].tolist() == [1] * len(ids)
    torch.testing.assert_close(lens.final_prob[-1], logits[0].softmax(-1).max(-1).values)
    assert lens.kl[-1].abs().max() < 1e-5 and (lens.kl[:-1] > 1e-3).all()  # earlier layers differ
    assert (lens.final_rank >= 1).all() and (lens.final_prob <= lens.top_prob + 1e-7).all()


def test_run_lens_writes_strict_json_and_a_report_with_heatmaps(wide, tmp_path):
    folder, _, _ = wide
    out = tmp_path / "lens"
    result = run_lens(InterpLensConfig(model=str(folder), prompt=CLEAN, out=out, progress=False))
    saved = _strict(out / "lens.json")
    assert saved["layers"] == 3 and saved["texts"] == 1 and list(saved["mean_kl"]) == ["embeddings", "0", "1", "2"]
    lens = saved["lenses"][0]
    assert "".join(lens["tokens"]) == CLEAN and len(lens["rows"]) == 4
    assert lens["rows"][-1]["top_token"] == lens["final_top"] and saved == json.loads(json.dumps(result))
    report = (out / "report.html").read_text()
    assert report.count("<svg") == 3 and "France" in report  # KL chart and two heatmaps
    with pytest.raises(UsageError, match="--overwrite"):
        run_lens(InterpLensConfig(model=str(folder), prompt=CLEAN, out=out, progress=False))


def test_patching_restores_the_clean_metric_where_the_answer_is_decided(wide, pair):
    _, model, _ = wide
    grid = patch_grid(model, pair, list(KINDS), batch_size=7, progress=False)
    clean, corrupted = grid["clean_logit_diff"], grid["corrupted_logit_diff"]
    assert abs(clean - corrupted) > 0.05 and grid["positions"] == 5 and grid["layers"] == 3
    pre, post = grid["results"]["resid_pre"], grid["results"]["resid_post"]
    # all of layer 0's input from the clean run is the clean run
    assert pre["all_positions_logit_diff"][0] == pytest.approx(clean, abs=1e-5)
    assert pre["all_positions_effect"][0] == pytest.approx(1.0, abs=1e-4)
    # position 3 (France/Italy) is the only differing token: patching its embedding is the clean run too, and
    # patching an identical embedding changes nothing
    assert pre["effect"][0] == pytest.approx([0, 0, 0, 1, 0], abs=1e-4)
    # the last layer's output at the last position alone sets the answer logits; other positions do nothing
    assert post["effect"][2] == pytest.approx([0, 0, 0, 0, 1], abs=1e-4)
    # the first position sees only itself and is the same token in both prompts: no effect at any layer
    for kind in KINDS:
        assert [row[0] for row in grid["results"][kind]["effect"]] == pytest.approx([0, 0, 0], abs=1e-4)
    one_by_one = patch_grid(model, pair, ["attn_out"], batch_size=1, progress=False)
    torch.testing.assert_close(
        torch.tensor(one_by_one["results"]["attn_out"]["logit_diff"]),
        torch.tensor(grid["results"]["attn_out"]["logit_diff"]),
        rtol=0,
        atol=1e-5,
    )


def test_normalised_effect_by_hand():
    assert normalised(3.0, clean=5.0, corrupted=1.0) == 0.5
    assert normalised(-1.0, clean=5.0, corrupted=1.0) == -0.5
    assert math.isnan(normalised(2.0, clean=1.0, corrupted=1.0))


def test_run_patch_writes_strict_json_and_a_heatmap_per_kind(wide, tmp_path):
    folder, _, _ = wide
    out = tmp_path / "patch"
    config = InterpPatchConfig(
        model=str(folder),
        clean=CLEAN,
        corrupted=CORRUPTED,
        answer=" Paris",
        wrong_answer=" Rome",
        sites="resid_pre,mlp_out",
        out=out,
        progress=False,
    )
    result = run_patch(config)
    saved = _strict(out / "patching.json")
    assert list(saved["results"]) == ["resid_pre", "mlp_out"] and saved["tokens"][3] == " France"
    assert saved["corrupted_tokens"][3] == " Italy" and saved["patched_runs"] == 2 * 3 * (5 + 1)
    assert saved == json.loads(json.dumps(result))
    assert saved["results"]["resid_pre"]["effect"][0][3] == pytest.approx(1.0, abs=1e-4)
    report = (out / "report.html").read_text()
    assert report.count("<svg") == 2 and " France/ Italy" in report


def test_bad_patching_inputs_fail_before_the_model_loads(wide, tmp_path, monkeypatch):
    import tether.interp.patching as module

    folder, _, _ = wide

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(module, "load_inspected", no_model)
    base = {"model": str(folder), "clean": CLEAN, "corrupted": CORRUPTED, "answer": " Paris", "wrong_answer": " Rome"}
    cases = [
        ({"corrupted": "The capital of the United Kingdom is"}, r"--clean is 5 tokens and --corrupted 7.*same length"),
        ({"answer": " Paris is"}, r"--answer ' Paris is' is 2 tokens \(' Paris', ' is'\)"),
        ({"sites": "resid,mlp_out"}, r"--sites 'resid,mlp_out': expected kinds"),
        ({"corrupted": CLEAN}, "same tokens"),
    ]
    for change, message in cases:
        with pytest.raises(UsageError, match=message):
            run_patch(InterpPatchConfig(**{**base, **change}, out=tmp_path / "o", progress=False))
    assert not (tmp_path / "o").exists()


def test_heatmap_is_deterministic_svg_with_token_labels():
    values = [[0.1, None, 0.9], [float("nan"), 0.5, -0.2]]
    args = {"xlabels": ["The", " cat", " sat"], "ylabels": ["0", "1"], "title": "t", "annotations": [["a"] * 3] * 2}
    svg = heatmap(values, **args)
    assert svg.startswith("<svg") and svg == heatmap(values, **args) and " cat" in svg


def test_nnsight_reads_and_patches_the_same_values(wide, pair):
    nnsight = pytest.importorskip("nnsight", reason="nnsight is a parity reference, not a dependency")
    _, model, _ = wide
    clean, corrupted = torch.tensor([pair.clean]), torch.tensor([pair.corrupted])
    traced = nnsight.NNsight(model)
    sites = [Site("mlp_out", 0), Site("resid_post", 1), Site("attn_out", 2)]
    with torch.no_grad():
        with traced.trace(clean):  # nnsight reads modules in the order they run
            mlp_0 = traced.model.layers[0].mlp.output.save()
            post_1 = traced.model.layers[1].output.save()
            attn_2 = traced.model.layers[2].self_attn.output[0].save()
        with recording(model, sites) as ours:
            model(input_ids=clean)
        for site, value in zip(sites, [mlp_0, post_1, attn_2], strict=True):
            assert torch.equal(ours[site], value)
        # patch resid_pre of layer 1 at position 3 with the clean value, read the logit difference
        with traced.trace(clean):
            source = traced.model.layers[1].inputs[0][0].save()
        with traced.trace(corrupted):
            traced.model.layers[1].inputs[0][0][:, 3] = source[:, 3]
            logits = traced.output.logits.save()
    reference = float(logits[0, -1, pair.answer] - logits[0, -1, pair.wrong])
    clean_cache = {Site("resid_pre", 1): source[0]}
    mine = patched_logit_diffs(model, pair, clean_cache, [(Site("resid_pre", 1), [3])])
    assert float(mine[0]) == pytest.approx(reference, abs=1e-5)
