"""Activation capture on the tiny model: logits unchanged, values equal plain transformers' hidden states with
left and right padding, padding never stored, chunks within the budget, and an interrupted capture resumes
to the same store as an uninterrupted one."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from tether.errors import UsageError
from tether.interp.capture import capture, collecting, last_token_mask, run_capture
from tether.interp.config import InterpCaptureConfig
from tether.interp.encode import encode, forward_kwargs, pad
from tether.interp.sites import final_norm, parse_sites
from tether.interp.store import COLUMNS, ActivationStore, ActivationWriter

TEXTS = [
    "How do I bake bread?",
    "Tell me a story about a fox who learns to fly over the mountains",
    "Hi",
    "What is the capital of France, and why is it famous?",
    "Name three colours.",
]
SITES = "resid_pre.0,resid_post.*,attn_out.1,mlp_out.0"


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _tokenizer(tiny_model_dir, side):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.padding_side = side
    return tokenizer


def _capture(
    model, tokenizer, folder, *, sites=SITES, budget=2**30, batch_size=2, positions="all", texts=TEXTS, skip_first=0
):
    parsed = parse_sites(sites, 2)
    writer = ActivationWriter(folder, [str(s) for s in parsed], d_model=32, budget_bytes=budget)
    capture(
        model,
        tokenizer,
        texts,
        parsed,
        writer,
        batch_size=batch_size,
        positions=positions,
        skip_first=skip_first,
        progress=False,
    )
    writer.close()
    return ActivationStore(folder)


def _read_all(store):
    return {site: store.read(site, COLUMNS) for site in store.sites}


def test_last_token_mask_with_left_and_right_padding():
    right = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]).bool()
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]]).bool()
    assert last_token_mask(right).nonzero().tolist() == [[0, 2], [1, 0]]
    assert last_token_mask(left).nonzero().tolist() == [[0, 3], [1, 3]]


def test_capture_hooks_leave_the_logits_unchanged(tiny):
    model, tokenizer = tiny
    batch = pad(tokenizer, encode(tokenizer, TEXTS))
    sites = parse_sites("resid_pre.*,resid_post.*,attn_out.*,mlp_out.*", 2)
    with torch.no_grad():
        plain = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        with collecting(model, sites, batch.mask) as records:
            hooked = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert torch.equal(plain, hooked)
    assert records["resid_post.1"].shape == (int(batch.mask.sum()), 32)


@pytest.mark.parametrize("side", ["right", "left"])
def test_captured_values_equal_hidden_states_of_each_text_alone(tiny, tiny_model_dir, tmp_path, side):
    model, _ = tiny
    tokenizer = _tokenizer(tiny_model_dir, side)
    store = _capture(model, tokenizer, tmp_path / "acts", batch_size=3)
    ids = encode(tokenizer, TEXTS)
    assert store.tokens == sum(len(i) for i in ids)  # padding is never stored
    got = _read_all(store)
    expected_cols = {
        "example": [e for e, i in enumerate(ids) for _ in i],
        "position": [p for i in ids for p in range(len(i))],
        "token_id": [t for i in ids for t in i],
    }
    for name in COLUMNS:
        assert got["resid_post.0"][name].tolist() == expected_cols[name]
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([i]), output_hidden_states=True).hidden_states for i in ids]
        last_normed = final_norm(model)(got["resid_post.1"]["resid_post.1"])
    # hidden_states = (embeddings, layer 0 output, final norm of layer 1 output)
    torch.testing.assert_close(got["resid_pre.0"]["resid_pre.0"], torch.cat([h[0][0] for h in alone]))
    torch.testing.assert_close(got["resid_post.0"]["resid_post.0"], torch.cat([h[1][0] for h in alone]))
    torch.testing.assert_close(last_normed, torch.cat([h[2][0] for h in alone]))


@pytest.mark.parametrize("side", ["right", "left"])
def test_capture_equals_the_same_padded_batch_exactly_and_last_positions(tiny, tiny_model_dir, tmp_path, side):
    model, _ = tiny
    tokenizer = _tokenizer(tiny_model_dir, side)
    ids = encode(tokenizer, TEXTS)
    batch = pad(tokenizer, ids)
    with torch.no_grad():
        hidden = model(**forward_kwargs(model, batch), output_hidden_states=True).hidden_states
    full = _capture(model, tokenizer, tmp_path / "all", sites="resid_post.0", batch_size=len(TEXTS))
    assert torch.equal(full.read("resid_post.0")["resid_post.0"], hidden[1][batch.mask])
    last = _capture(model, tokenizer, tmp_path / "last", sites="resid_post.0", positions="last", batch_size=2)
    read = last.read("resid_post.0", COLUMNS)
    assert read["example"].tolist() == list(range(len(TEXTS)))
    assert read["position"].tolist() == [len(i) - 1 for i in ids]
    assert read["token_id"].tolist() == [i[-1] for i in ids]
    with torch.no_grad():
        alone = torch.stack(
            [model(input_ids=torch.tensor([i]), output_hidden_states=True).hidden_states[1][0, -1] for i in ids]
        )
    torch.testing.assert_close(read["resid_post.0"], alone)


@pytest.mark.parametrize("side", ["right", "left"])
def test_skip_first_leaves_out_each_texts_first_tokens_only(tiny, tiny_model_dir, tmp_path, side):
    model, _ = tiny
    tokenizer = _tokenizer(tiny_model_dir, side)
    full = _capture(model, tokenizer, tmp_path / "all", sites="resid_post.0").read("resid_post.0", COLUMNS)
    cut = _capture(model, tokenizer, tmp_path / "cut", sites="resid_post.0", skip_first=2).read("resid_post.0", COLUMNS)
    kept = full["position"] >= 2
    assert int(kept.sum()) < len(kept) and cut["position"].min().item() == 2
    assert torch.equal(cut["example"], full["example"][kept]) and torch.equal(cut["position"], full["position"][kept])
    torch.testing.assert_close(cut["resid_post.0"], full["resid_post.0"][kept])


def test_a_tiny_budget_gives_chunks_of_whole_examples_that_read_back_the_same(tiny, tmp_path):
    model, tokenizer = tiny
    one = _capture(model, tokenizer, tmp_path / "one", batch_size=2)
    many = _capture(model, tokenizer, tmp_path / "many", budget=1, batch_size=2)
    assert len(one.index["chunks"]) == 1 and len(many.index["chunks"]) == 3  # 5 texts, 2 per batch
    examples = [set(c["example"].tolist()) for c in many.chunks("resid_post.1", ["example"])]
    assert examples == [{0, 1}, {2, 3}, {4}]
    a, b = _read_all(one), _read_all(many)
    for site in one.sites:
        for name in (site, *COLUMNS):
            assert torch.equal(a[site][name], b[site][name])


def test_an_interrupted_capture_resumes_to_the_same_store(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    reference = _read_all(_capture(model, tokenizer, tmp_path / "ref", batch_size=2))
    sites = parse_sites(SITES, 2)
    names = [str(s) for s in sites]
    real_forward = model.forward
    calls = {"n": 0}

    @functools.wraps(real_forward)  # the same signature: capture passes the same keywords
    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", failing)
    writer = ActivationWriter(tmp_path / "acts", names, d_model=32)  # a large budget: nothing written until a stop
    with pytest.raises(KeyboardInterrupt):
        capture(model, tokenizer, TEXTS, sites, writer, batch_size=2, progress=False)
    monkeypatch.setattr(model, "forward", real_forward)
    again = ActivationWriter(tmp_path / "acts", names, d_model=32)
    assert again.examples_done == 4  # the two finished batches were flushed by the stop
    capture(model, tokenizer, TEXTS, sites, again, batch_size=3, progress=False)
    again.close()
    resumed = _read_all(ActivationStore(tmp_path / "acts"))
    for site in names:
        for name in (site, *COLUMNS):
            assert torch.equal(reference[site][name], resumed[site][name])


def test_run_capture_writes_a_run_folder_resumes_and_refuses_changed_settings(tiny_model_dir, tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"instruction": t}) + "\n" for t in TEXTS))
    out = tmp_path / "run"
    config = InterpCaptureConfig(
        model=str(tiny_model_dir), data=str(data), limit=3, sites="resid_post.-1", out=out, progress=False
    )
    summary = run_capture(config)
    assert summary["examples"] == 3 and summary["sites"] == ["resid_post.1"] and summary["tokens"] > 3 * 10
    assert json.loads((out / "tether-run.json").read_text())["kind"] == "interp capture"
    assert (out / "config.yaml").is_file() and json.loads((out / "summary.json").read_text()) == summary
    with pytest.raises(UsageError, match="--resume"):
        run_capture(config)
    with pytest.raises(UsageError, match="positions 'all' -> 'last'"):
        run_capture(config.model_copy(update={"resume": True, "positions": "last", "limit": 5}))
    more = run_capture(config.model_copy(update={"resume": True, "limit": 5}))
    assert more["examples"] == 5 and more["examples_before"] == 3 and more["chunks"] == 2
    store = ActivationStore(out / "activations")
    assert store.read("resid_post.1", ["example"])["example"].unique().tolist() == [0, 1, 2, 3, 4]


def test_run_capture_refuses_bad_sites_before_loading_the_model(tiny_model_dir, tmp_path, monkeypatch):
    import tether.interp.capture as module

    data = tmp_path / "rows.txt"
    data.write_text("one text\n")

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load")

    config = InterpCaptureConfig(model=str(tiny_model_dir), data=str(data), sites="residual.1", out=tmp_path / "o")
    with monkeypatch.context() as patch:
        patch.setattr(module, "load_inspected", no_model)
        with pytest.raises(UsageError, match=r"KIND\.LAYER"):
            run_capture(config)
    with pytest.raises(UsageError, match=r"layers 0\.\.1"):
        run_capture(config.model_copy(update={"sites": "resid_post.2"}))
    assert not (tmp_path / "o").exists()


def test_the_forward_pass_stops_after_the_last_requested_site(tiny, tmp_path):
    model, tokenizer = tiny
    from tether.interp.sites import decoder_layers

    ran = {"layer 1": 0, "unembedding": 0}
    handles = [
        decoder_layers(model)[1].register_forward_pre_hook(lambda *_: ran.__setitem__("layer 1", ran["layer 1"] + 1)),
        model.lm_head.register_forward_pre_hook(lambda *_: ran.__setitem__("unembedding", ran["unembedding"] + 1)),
    ]
    try:
        store = _capture(model, tokenizer, tmp_path / "acts", sites="mlp_out.0,resid_pre.0")
        assert ran == {"layer 1": 0, "unembedding": 0} and store.tokens > 0
        _capture(model, tokenizer, tmp_path / "top", sites="resid_post.1")
        assert ran == {"layer 1": 3, "unembedding": 0}  # 3 batches reach the top layer, never the unembedding
    finally:
        for handle in handles:
            handle.remove()
