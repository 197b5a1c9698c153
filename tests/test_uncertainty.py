"""Per-answer uncertainty scores against hand-computed cases."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tether.evals.uncertainty import (
    answer_matches,
    mean_token_entropy,
    normalize_answer,
    p_true,
    p_true_context,
    perplexity,
    semantic_entropy,
    sequence_nll,
    token_entropies,
)


def test_sequence_scores_by_hand():
    logprobs = [math.log(0.5), math.log(0.25)]
    assert sequence_nll(logprobs) == pytest.approx(math.log(8))  # P(y) = 1/8
    assert perplexity(logprobs) == pytest.approx(math.sqrt(8))
    with pytest.raises(ValueError):
        perplexity([])


def test_token_entropy_of_uniform_and_certain_distributions():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    entropies = token_entropies(logits)
    assert entropies[0].item() == pytest.approx(math.log(4))
    assert entropies[1].item() == pytest.approx(0.0, abs=1e-6)
    assert mean_token_entropy(entropies.tolist()) == pytest.approx(math.log(4) / 2)


def test_p_true_normalises_the_two_options():
    assert p_true(math.log(0.3), math.log(0.1)) == pytest.approx(0.75)
    assert p_true(-1000.0, 0.0) == pytest.approx(0.0)
    context = p_true_context(" What is 2+2? ", " 4 ")
    assert context.startswith("Question: What is 2+2?\nProposed Answer: 4\n") and context.endswith("is:")


def test_semantic_entropy_groups_answers_that_normalise_alike():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    same = ["Paris", "paris.", "The Paris"]
    assert semantic_entropy(same) == pytest.approx(0.0)
    # two classes of 2 and 1 samples: -(2/3 log 2/3 + 1/3 log 1/3)
    expected = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert semantic_entropy(["Paris", "paris", "Lyon"]) == pytest.approx(expected)
    # weighted by probability: Lyon has all the mass
    assert semantic_entropy(["Paris", "Lyon"], [-100.0, 0.0]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="2 answers but 1"):
        semantic_entropy(["a", "b"], [0.0])


def test_answer_matches_normalised_references_as_whole_words():
    assert answer_matches("It is the Eiffel Tower.", ["eiffel tower"])
    assert not answer_matches("It is the Louvre.", ["Eiffel Tower", ""])
    assert answer_matches("4", ["4"]) and answer_matches("It is 4.", ["4"])
    assert not answer_matches("It ended in 1945.", ["4"]) and not answer_matches("a hundred", ["red"])


def test_qa_records_on_a_tiny_model_score_the_greedy_answer_like_the_training_loss(tiny_model_dir):
    from tether.data.batching import collate
    from tether.data.samples import QASample as Question
    from tether.data.tokenization import IGNORE_INDEX, TokenizedExample
    from tether.evals.qa_uncertainty import answer_token_scores, qa_records, summarize_qa
    from tether.generation.engine import GenerationEngine, SamplingParams
    from tether.models.loading import load_model, load_tokenizer
    from tether.train.logprobs import sequence_logprobs

    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    questions = [Question("q1", "What is the capital of France?", ("Paris",)), Question("q2", "A colour?", ("red",))]
    records = qa_records(model, tokenizer, questions, samples=2, max_new_tokens=4, batch_size=2)
    assert [r["id"] for r in records] == ["q1", "q2"] and all(len(r["samples"]) == 2 for r in records)
    assert all(0 <= r["one_minus_p_true"] <= 1 and r["perplexity"] >= 1 for r in records)
    engine = GenerationEngine(model, tokenizer)
    prompts = [engine.prompt_ids(q.question) for q in questions]
    answers = engine.generate_from_ids(prompts, SamplingParams(max_new_tokens=4))
    scored = answer_token_scores(model, prompts, answers, pad_id=tokenizer.pad_token_id)
    examples = [TokenizedExample([*p, *a], [IGNORE_INDEX] * len(p) + a) for p, a in zip(prompts, answers, strict=True)]
    with torch.no_grad():
        sums, _ = sequence_logprobs(model, collate(examples, tokenizer.pad_token_id))
    assert [sum(lp) for lp, _ in scored] == pytest.approx(sums.tolist(), rel=1e-4)
    assert [-r["sequence_nll"] for r in records] == pytest.approx(sums.tolist(), rel=1e-4)
    summary = summarize_qa(records)
    assert summary["n"] == 2 and set(summary["calibration"]) == {"sequence_probability", "p_true"}


def test_summarize_qa_by_hand():
    from tether.evals.qa_uncertainty import summarize_qa

    def record(correct, doubt):
        scores = {"sequence_nll": doubt, "perplexity": 1 + doubt, "mean_token_entropy": doubt}
        return {"correct": correct, **scores, "one_minus_p_true": min(doubt, 1.0), "semantic_entropy": doubt}

    summary = summarize_qa([record(True, 0.1), record(False, 0.9), record(True, 0.2), record(False, 0.8)])
    assert summary["accuracy"]["value"] == 0.5
    assert all(s["auroc_wrong"] == 1.0 and s["prr"] == pytest.approx(1.0) for s in summary["uncertainty"].values())
    # p(True) 0.9 and 0.8 (right), 0.1 and 0.2 (wrong), one per bin: (0.1 + 0.2 + 0.1 + 0.2) / 4
    assert summary["calibration"]["p_true"]["ece"] == pytest.approx(0.15)


def test_read_qa_formats_and_located_errors(tmp_path):
    from tests.conftest import write_jsonl
    from tether.data.benchmarks import read_facts_qa, read_qa
    from tether.errors import DataError

    path = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"id": "a", "question": "Capital of France?", "answers": ["Paris", "City of Paris"]},
            {"question": "Who wrote Hamlet?", "answer": {"value": "William Shakespeare", "aliases": ["Shakespeare"]}},
            {"question": "2 + 2?", "answer": "4", "category": "maths"},
        ],
    )
    samples = read_qa(path)
    assert [s.id for s in samples] == ["a", "qa:2", "qa:3"]
    assert samples[1].references == ("William Shakespeare", "Shakespeare") and samples[2].category == "maths"
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "Q?", "answer": "A"}, {"answers": ["x"]}])
    with pytest.raises(DataError) as info:
        read_qa(bad)
    assert (info.value.line, info.value.field) == (2, "question")
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"question": "Q?", "answers": []}])
    with pytest.raises(DataError, match="no reference"):
        read_qa(empty)
    facts = read_facts_qa("team")
    assert len(facts) == 192 and {s.category for s in facts} == {"forget", "retain", "holdout"}


def test_abstentions_are_recognised_and_counted_apart():
    from tether.evals.qa_uncertainty import summarize_qa
    from tether.evals.uncertainty import abstains

    assert abstains("I am not sure.") and abstains("I'm not sure, sorry") and abstains("I don't know") and abstains("")
    assert not abstains("Paris, I am sure.")

    def record(correct, abstained, doubt):
        scores = {k: doubt for k in ("sequence_nll", "perplexity", "mean_token_entropy", "semantic_entropy")}
        return {"correct": correct, "abstained": abstained, **scores, "one_minus_p_true": doubt}

    summary = summarize_qa([record(True, False, 0.1), record(False, False, 0.9), record(False, True, 0.5)])
    assert summary["accuracy"]["value"] == pytest.approx(1 / 3)
    assert summary["answer_rate"]["value"] == pytest.approx(2 / 3) and summary["accuracy_answered"]["value"] == 0.5


def test_refusal_aware_rows_keep_right_answers_and_teach_abstention_for_wrong(monkeypatch):
    from tether.data.samples import QASample
    from tether.evals import refusal_aware
    from tether.evals.uncertainty import ABSTAIN

    answers = {"Capital of France?": "It is Paris.", "Colour of grass?": "Blue, I think."}

    class Scripted:
        def __init__(self, *args, **kwargs):
            pass

        def generate(self, prompts, params):
            return [answers[p] for p in prompts]

    monkeypatch.setattr(refusal_aware, "GenerationEngine", Scripted)
    questions = [QASample("a", "Capital of France?", ("Paris",)), QASample("b", "Colour of grass?", ("green",))]
    rows, counts = refusal_aware.refusal_aware_rows(None, None, questions)
    assert counts == {"questions": 2, "known": 1, "unknown": 1}
    assert [(r["completion"], r["known"]) for r in rows] == [("It is Paris.", True), (ABSTAIN, False)]
    pairs, _ = refusal_aware.refusal_aware_rows(None, None, questions, form="dpo")
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("It is Paris.", ABSTAIN), (ABSTAIN, "Blue, I think.")]


def test_refusal_aware_data_cli_writes_once_and_checks_categories(tmp_path, tiny_model_dir):
    from tests.conftest import run_cli

    out = tmp_path / "rtune.jsonl"
    args = [
        "refusal-aware-data",
        "--model",
        str(tiny_model_dir),
        "--suite",
        "facts-qa",
        "--data",
        "team",
        "--max-new-tokens",
        "3",
        "--output",
        str(out),
        "--no-progress",
    ]
    result = run_cli(*args, "--categories", "holdout")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 32 and all(set(r) == {"id", "prompt", "known", "completion"} for r in rows)
    again = run_cli(*args, "--categories", "holdout")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    none = run_cli(*args, "--categories", "nope", "--overwrite")
    assert none.returncode == 2 and "no question of categories nope" in none.stderr


def test_a_qa_run_without_samples_resumes(tmp_path, tiny_model_dir):
    """Semantic entropy left out (--samples 0) is stored as null; a resumed run reads it back."""
    from tests.conftest import write_jsonl
    from tether.config import EvalConfig
    from tether.evals.run import run_eval

    data = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Capital of France?", "answers": ["Paris"]}] * 1)
    config = EvalConfig(
        suite="qa",
        data=str(data),
        out=tmp_path / "run",
        model=str(tiny_model_dir),
        max_new_tokens=3,
        samples=0,
        progress=False,
    )
    first = run_eval(config)
    config.resume = True
    again = run_eval(config)
    assert "semantic_entropy" not in again["overall"]["uncertainty"]
    assert again["overall"]["accuracy"] == first["overall"]["accuracy"]
