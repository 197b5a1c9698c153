"""Sites, hooks and the activation store: hooks read the model's own modules without changing its logits."""

from __future__ import annotations

import pytest
import torch

from tether.errors import DataError, UsageError
from tether.interp.hooks import editing, recording
from tether.interp.sites import Site, decoder_layers, parse_sites
from tether.interp.store import ActivationStore, ActivationWriter


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = tokenizer(["How do I bake bread?", "Tell me a story about a fox"], return_tensors="pt", padding=True)
    return model, batch


def test_parse_sites_expands_stars_and_counts_from_the_top():
    assert parse_sites("resid_post.*,mlp_out.-1", 3) == [
        Site("resid_post", 0),
        Site("resid_post", 1),
        Site("resid_post", 2),
        Site("mlp_out", 2),
    ]
    with pytest.raises(UsageError, match=r"layers 0\.\.2"):
        parse_sites("resid_post.3", 3)
    with pytest.raises(UsageError, match=r"KIND\.LAYER"):
        parse_sites("residual.1", 3)


def test_recording_hooks_leave_logits_unchanged_and_match_hidden_states(tiny):
    model, batch = tiny

    def hook_counts():
        return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]

    with torch.no_grad():
        plain = model(**batch, output_hidden_states=True)  # transformers keeps hooks of its own after this
        counts = hook_counts()
        sites = parse_sites("resid_pre.*,resid_post.*,attn_out.*,mlp_out.*", len(decoder_layers(model)))
        with recording(model, sites) as seen:
            hooked = model(**batch)
    assert torch.equal(plain.logits, hooked.logits)
    assert torch.equal(seen[Site("resid_pre", 0)], plain.hidden_states[0])
    assert torch.equal(seen[Site("resid_post", 0)], plain.hidden_states[1])
    # resid_post.i = resid_pre.i + attn_out.i + mlp_out.i (the Llama block's two residual additions)
    total = seen[Site("resid_pre", 1)] + seen[Site("attn_out", 1)] + seen[Site("mlp_out", 1)]
    torch.testing.assert_close(total, seen[Site("resid_post", 1)])
    assert hook_counts() == counts  # ours are gone after the block


def test_editing_changes_the_output_and_is_undone(tiny):
    model, batch = tiny
    with torch.no_grad():
        before = model(**batch).logits
        with editing(model, [(Site("resid_pre", 1), torch.zeros_like)]):
            edited = model(**batch).logits
        after = model(**batch).logits
    assert not torch.allclose(before, edited)
    assert torch.equal(before, after)


def test_store_writes_chunks_within_budget_and_resumes(tmp_path):
    folder = tmp_path / "acts"
    writer = ActivationWriter(folder, ["resid_post.0"], d_model=4, budget_bytes=200)
    for example in range(5):  # 3 tokens of 4 floats + 3 int64 columns = 120 bytes per example
        cols = {"example": torch.full((3,), example), "position": torch.arange(3), "token_id": torch.arange(3)}
        writer.add(cols, {"resid_post.0": torch.full((3, 4), float(example))}, examples=1)
    assert writer.examples_done == 4  # the fifth is still buffered: a stop here loses only it
    again = ActivationWriter(folder, ["resid_post.0"], d_model=4, budget_bytes=200)
    assert again.examples_done == 4 and len(again.index["chunks"]) == 2
    again.close()
    store = ActivationStore(folder)
    read = store.read("resid_post.0", ["example"])
    assert read["resid_post.0"].shape == (12, 4) and read["example"].tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    with pytest.raises(DataError, match=r"no site 'mlp_out\.0'"):
        store.read("mlp_out.0")
    with pytest.raises(DataError, match=r"holds sites resid_post\.0"):
        ActivationWriter(folder, ["mlp_out.0"], d_model=4)


def test_read_texts_takes_the_first_text_field_and_locates_errors(tmp_path, tokenizer_dir):
    from transformers import AutoTokenizer

    from tether.interp.texts import model_inputs, read_texts

    good = tmp_path / "rows.jsonl"
    good.write_text('{"instruction": "Bake bread"}\n{"text": "raw text"}\n{"prompt": "third"}\n')
    texts = read_texts(good, limit=2)
    assert [(t.text, t.source, t.is_instruction) for t in texts] == [
        ("Bake bread", f"{good}:1", True),
        ("raw text", f"{good}:2", False),
    ]
    inputs = model_inputs(AutoTokenizer.from_pretrained(tokenizer_dir), texts)
    assert inputs[0].startswith("<|im_start|>") and inputs[0].rstrip().endswith("assistant") and inputs[1] == "raw text"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"question": "no text"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2.*text"):
        read_texts(bad)
