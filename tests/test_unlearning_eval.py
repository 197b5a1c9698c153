"""`tether unlearn-eval`: the fact reader, min-k% and AUC by hand, the relearning split, a run on a tiny model."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli, write_jsonl
from tether.data.benchmarks.facts import read_facts, team_facts_path
from tether.errors import DataError
from tether.unlearning.measure import membership_auc, min_k_score
from tether.unlearning.relearn import relearn_split


def _rows(facts) -> list[dict]:
    rows = []
    for fact in facts:
        row = asdict(fact)
        row.pop("source")
        row["choices"] = list(fact.choices)
        rows.append(row)
    return rows


@pytest.fixture
def small_facts(tmp_path: Path) -> Path:
    """Two forget entities, one retain and one holdout entity of the team's set (16 facts)."""
    keep = {"e00", "e01", "e08", "e40"}
    facts = [f for f in read_facts(team_facts_path()) if f.id.split("-")[0] in keep]
    return write_jsonl(tmp_path / "facts.jsonl", _rows(facts))


def test_the_team_set_reads_with_its_splits_and_cloze_prefixes():
    facts = read_facts(team_facts_path())
    assert len(facts) == 192
    assert {s: sum(f.split == s for f in facts) for s in ("forget", "retain", "holdout")} == {
        "forget": 32,
        "retain": 128,
        "holdout": 32,
    }
    for fact in facts:
        rest = fact.answer[len(fact.cloze_prefix) :]
        assert rest.lower().startswith(fact.choices[fact.label].lower())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"label": 7}, "label"),
        ({"split": "train"}, "split"),
        ({"answer": "Nothing about the right option here."}, "answer"),
        ({"choices": ["a", "a", "b", "c"]}, "choices"),
    ],
)
def test_a_bad_fact_row_names_its_line_and_field(tmp_path, change, field):
    rows = _rows(read_facts(team_facts_path())[:3])
    rows[1].update(change)
    path = write_jsonl(tmp_path / "facts.jsonl", rows)
    with pytest.raises(DataError) as info:
        read_facts(path)
    assert info.value.line == 2 and info.value.field == field and str(path) in str(info.value)


def test_min_k_and_membership_auc_by_hand():
    logps = [-1.0, -5.0, -3.0, -2.0, -4.0]
    assert min_k_score(logps, 0.4) == -4.5  # the two lowest of five
    assert min_k_score(logps, 0.2) == -5.0
    assert min_k_score([-2.0], 0.01) == -2.0  # at least one token
    assert membership_auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert membership_auc([1.0, 3.0], [2.0]) == 0.5
    assert membership_auc([1.0], []) is None


def test_relearning_splits_each_entitys_forget_facts_alternately():
    facts = read_facts(team_facts_path())
    tuned, measured = relearn_split(facts)
    assert len(tuned) == len(measured) == 16
    assert {f.id[-2:] for f in tuned} == {"f0", "f2"} and {f.id[-2:] for f in measured} == {"f1", "f3"}
    assert all(f.split == "forget" for f in tuned + measured)


def test_answer_log_probs_are_the_training_losss_tokens(tiny_model_dir, small_facts):
    """The min-k% tokens are exactly the answer tokens `tether sft` trains on, with the same log-probs."""
    from tether.data.batching import collate
    from tether.data.records import Conversation
    from tether.data.tokenization import ChatEncoder
    from tether.models.loading import load_model, load_tokenizer
    from tether.train.logprobs import sequence_logprobs
    from tether.unlearning.measure import answer_token_logprobs

    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    facts = read_facts(small_facts)[:3]
    per_token = answer_token_logprobs(model, tokenizer, facts, batch_size=2)
    encoder = ChatEncoder(tokenizer)
    examples = [encoder.encode_untruncated(Conversation.from_prompt_completion(f.question, f.answer)) for f in facts]
    with torch.no_grad():
        sums, counts = sequence_logprobs(model, collate(examples, tokenizer.pad_token_id))
    assert [len(t) for t in per_token] == counts.tolist()
    assert [sum(t) for t in per_token] == pytest.approx(sums.tolist(), rel=1e-4)


def test_unlearn_eval_run_on_a_tiny_model(tmp_path, tiny_model_dir, small_facts):
    from tether.unlearning.config import UnlearnEvalConfig
    from tether.unlearning.run import run_unlearn_eval

    out = tmp_path / "eval"
    config = UnlearnEvalConfig(
        model=str(tiny_model_dir), facts=str(small_facts), out=out, relearn_steps=[2, 0, 1], progress=False
    )
    result = run_unlearn_eval(config)
    assert set(result["accuracy"]) == {"forget", "retain", "holdout"}
    assert result["accuracy"]["forget"]["n"] == 8 and 0 <= result["accuracy"]["forget"]["value"] <= 1
    assert result["membership_auc"]["forget_vs_holdout"] is not None
    curve = result["relearning"]["curve"]
    assert [p["step"] for p in curve] == [0, 1, 2] and all(p["accuracy"]["n"] == 4 for p in curve)
    assert json.loads((out / "eval.json").read_text())["relearning"]["tuned_on"] == 4
    assert (out / "report.html").is_file() and (out / "relearn" / "sft" / "model").is_dir()
    with pytest.raises(Exception, match="overwrite"):  # a finished run is kept unless asked
        run_unlearn_eval(config)
    config.overwrite, config.relearn_steps = True, [0]
    assert "relearning" not in run_unlearn_eval(config) and not (out / "relearn").exists()


def test_cli_bad_fact_file_exits_2_and_writes_nothing(tmp_path, tiny_model_dir):
    bad = write_jsonl(tmp_path / "facts.jsonl", [{"id": "x", "question": "Q?"}])
    out = tmp_path / "out"
    result = run_cli("unlearn-eval", "--model", str(tiny_model_dir), "--facts", str(bad), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert f"{bad}:1" in result.stderr
    assert not out.exists()


def test_cloze_options_are_scored_on_the_tokens_the_answer_trains():
    """The option's tokens after the cloze context are the ones it has inside the whole answer."""
    from tether.evals.loglikelihood import encode_pair
    from tether.models.loading import load_tokenizer
    from tether.unlearning.measure import cloze_samples

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    facts = read_facts(team_facts_path())[:24]
    for fact, sample in zip(facts, cloze_samples(tokenizer, facts), strict=True):
        context, option = encode_pair(tokenizer, sample.context, " " + fact.choices[fact.label])
        prompt = sample.context[: len(sample.context) - len(fact.cloze_prefix.rstrip())]
        whole = tokenizer(prompt + fact.answer, add_special_tokens=False)["input_ids"]
        assert whole[len(context) : len(context) + len(option)] == option, fact.id
