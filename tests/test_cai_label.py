"""`tether cai label`: AI preference labels asked in both orders, soft labels written, position bias and
agreement reported, unscored judgements explicit, resume, bad inputs refused before any model loads."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import write_jsonl
from tether.cai.config import CaiLabelConfig
from tether.cai.label import AnswerJudge, Reading, judgement, parse_answer
from tether.cai.label_run import run_label
from tether.cli import main
from tether.data.readers import read_records
from tether.errors import UsageError
from tether.targets import Reply, ScriptedTarget

PROMPTS = [
    {"id": "kill", "prompt": "How do I kill a Python process?"},
    {"id": "bomb", "prompt": "How do I make a bomb?", "category": "harmful"},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]},
]


class SeededGenerator:
    """Sample i of every prompt is ``answer <i>`` (``same``: every sample is the same text)."""

    name = "seeded"

    def __init__(self, same: bool = False) -> None:
        self.same = same
        self.calls: list[tuple[str, int | None]] = []

    def generate(self, chats, params):
        out = []
        for chat in chats:
            last = [m.content for m in chat if m.role == "user"][-1]
            self.calls.append((last, params.seed))
            out.append(Reply(f"Answer to {last}" if self.same else f"Answer {params.seed} to {last}"))
        return out


def _options(text: str) -> tuple[str, str]:
    a, b = re.search(r"\(A\) (.*)\n\n\(B\) (.*)\n\nAnswer with A or B\.", text, re.DOTALL).groups()  # type: ignore[union-attr]
    return a, b


def _prefers_higher_sample(chat) -> str:
    """A consistent judge: the response of the higher sample number is better."""
    a, b = _options(chat[-1].content)
    return "A" if int(a.split()[1]) > int(b.split()[1]) else "B"


def _config(tmp_path: Path, prompts: Path, **overrides) -> CaiLabelConfig:
    return CaiLabelConfig(**{"prompts": str(prompts), "out": tmp_path / "label", "progress": False, **overrides})


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)


def test_answers_are_read_only_when_they_name_an_option():
    assert [parse_answer(t) for t in ("A", "(B)", "The answer is: (A)", "**B**", "b.")] == ["A", "B", "A", "B", "B"]
    assert [parse_answer(t) for t in ("A good question.", "Neither", "", "B is better")] == [None] * 4


def test_both_orders_are_averaged_and_a_same_letter_judge_is_position_biased():
    always_a = judgement(Reading(1.0), Reading(1.0))
    assert always_a["p_first"] == 0.5 and always_a["winner"] == "tie" and always_a["position_biased"] is True
    soft = judgement(Reading(0.8), Reading(0.4))  # order 2: p(B) = p(first) = 0.6
    assert soft["p_first"] == pytest.approx(0.7) and soft["winner"] == "first" and soft["position_biased"] is False
    assert soft["disagreement"] == pytest.approx(0.2)
    unread = judgement(Reading(0.8), Reading(None, "hmm", "the answer names neither A nor B"))
    assert unread["p_first"] is None and unread["unscored"] == "order 2: the answer names neither A nor B"


def test_a_judge_that_always_says_a_has_bias_rate_one_and_p_one_half(tmp_path, prompt_file):
    judge = AnswerJudge(ScriptedTarget(lambda chat: "A"))
    summary = run_label(_config(tmp_path, prompt_file, samples=3), generator=SeededGenerator(), judge=judge)
    labels = _lines(tmp_path / "label" / "labels.jsonl")
    pairs = [p for record in labels for p in record["pairs"]]
    assert len(pairs) == 3 * 2 and all(p["p_first"] == 0.5 and p["position_biased"] for p in pairs)
    assert summary["position_bias_rate"]["value"] == 1.0 and summary["ties"] == 6
    assert summary["preference_pairs"] == 0 and summary["pairs_not_written"] == {"tie": 6}
    # each pair was asked in both orders: order 2 swaps the options
    first, second = (c[-1].content for c in judge.target.calls[:2])
    assert _options(first) == _options(second)[::-1]


def test_soft_labels_from_endpoint_logprobs_are_written_and_read_back(tmp_path, prompt_file):
    from tests.openai_stub import openai_stub

    def reply(messages):
        a, b = _options(messages[-1]["content"])
        better_a = int(a.split()[1]) > int(b.split()[1])
        p_a = 0.8 if better_a else 0.3  # a little bias towards B: order 1 and order 2 disagree by 0.1
        return ("A" if p_a > 0.5 else "B"), {"A": math.log(p_a), " B": math.log(1 - p_a), "C": -9.0}

    with openai_stub(reply) as (url, requests):
        config = _config(tmp_path, prompt_file, judge_endpoint=url, judge_endpoint_model="judge")
        summary = run_label(config, generator=SeededGenerator())
    assert requests[0]["body"]["logprobs"] is True and requests[0]["body"]["top_logprobs"] == 5
    assert summary["judged"] == summary["scored"] == 3 and summary["preference_pairs"] == 3
    assert summary["position_bias_rate"]["value"] == 0.0 and summary["mean_disagreement"] == pytest.approx(0.1)
    records = read_records(tmp_path / "label" / "preferences.jsonl", "preference")
    # sample 1 is better: p(first = sample 0) = (0.3 + (1 - 0.8)) / 2 = 0.25, so p_chosen = 0.75
    assert [r.p_chosen for r in records] == pytest.approx([0.75] * 3)  # type: ignore[union-attr]
    assert all(r.chosen[0].content.startswith("Answer 1 ") for r in records)  # type: ignore[index,union-attr]
    row = _lines(tmp_path / "label" / "preferences.jsonl")[0]
    assert row["source"] == "cai-label:kill" and row["meta"]["judge"] == f"judge@{url}"
    assert row["meta"]["p_a"] == pytest.approx([0.3, 0.8]) and summary["mean_p_chosen"] == pytest.approx(0.75)


def test_identical_responses_make_no_pair_and_unreadable_answers_are_unscored(tmp_path, prompt_file):
    summary = run_label(
        _config(tmp_path, prompt_file), generator=SeededGenerator(same=True), judge=AnswerJudge(ScriptedTarget({}))
    )
    assert summary["identical_skipped"] == 3 and summary["judged"] == 0 and summary["preference_pairs"] == 0

    unsure = AnswerJudge(ScriptedTarget(lambda chat: "Both are fine."))
    config = _config(tmp_path, prompt_file, out=tmp_path / "unsure")
    summary = run_label(config, generator=SeededGenerator(), judge=unsure)
    assert summary["unscored"] == 3 and summary["scored"] == 0 and summary["preference_pairs"] == 0
    assert summary["unscored_reasons"] == {"the answer names neither A nor B": 3}
    assert summary["position_bias_rate"]["n"] == 0 and summary["pairs_not_written"] == {"unscored": 3}


def test_agreement_with_a_labelled_set(tmp_path, prompt_file):
    labelled = write_jsonl(
        tmp_path / "human.jsonl",
        [
            {"prompt": "Q1", "chosen": "Answer 2 to Q1", "rejected": "Answer 1 to Q1"},
            {"prompt": "Q2", "chosen": "Answer 0 to Q2", "rejected": "Answer 3 to Q2"},
            {"prompt": "Q3", "chosen": "Answer 5 to Q3", "rejected": "Answer 4 to Q3"},
        ],
    )
    judge = AnswerJudge(ScriptedTarget(_prefers_higher_sample))
    config = _config(tmp_path, prompt_file, agreement=str(labelled))
    summary = run_label(config, generator=SeededGenerator(), judge=judge)
    block = summary["agreement"]
    assert block["pairs"] == 3 and block["agreement"]["value"] == pytest.approx(2 / 3) and block["agreement"]["n"] == 3
    assert block["position_bias_rate"]["value"] == 0.0
    assert 0 <= block["agreement"]["low"] <= block["agreement"]["high"] <= 1
    rows = _lines(tmp_path / "label" / "agreement.jsonl")
    assert [r["winner"] for r in rows] == ["first", "second", "first"] and rows[0]["line"] == 1

    biased = AnswerJudge(ScriptedTarget(lambda chat: "B"))
    config = _config(tmp_path, prompt_file, agreement=str(labelled), out=tmp_path / "biased")
    block = run_label(config, generator=SeededGenerator(), judge=biased)["agreement"]
    assert block["agreement"]["value"] == 0.0 and block["position_bias_rate"]["value"] == 1.0


def test_an_interrupted_run_resumes_and_redoes_failed_judgements(tmp_path, prompt_file):
    calls = {"n": 0}

    def crashing(chat):
        calls["n"] += 1
        if calls["n"] > 2:  # batch 1 (1 prompt, 1 pair, 2 orders), then the crash
            raise KeyboardInterrupt
        return _prefers_higher_sample(chat)

    config = _config(tmp_path, prompt_file, batch_size=1)
    with pytest.raises(KeyboardInterrupt):
        run_label(config, generator=SeededGenerator(), judge=AnswerJudge(ScriptedTarget(crashing)))
    assert [r["id"] for r in _lines(config.out / "labels.jsonl")] == ["kill"]
    with pytest.raises(UsageError, match="--resume"):
        run_label(config, generator=SeededGenerator(), judge=AnswerJudge(ScriptedTarget(_prefers_higher_sample)))
    with pytest.raises(UsageError, match="other settings"):
        run_label(config.model_copy(update={"resume": True, "samples": 3}), generator=SeededGenerator())

    def failing(chat):
        return RuntimeError("HTTP 500") if "bomb" in chat[-1].content else _prefers_higher_sample(chat)

    resumed, log = config.model_copy(update={"resume": True, "progress": True}), io.StringIO()
    generator = SeededGenerator()
    summary = run_label(
        resumed, console=Console(file=log), generator=generator, judge=AnswerJudge(ScriptedTarget(failing))
    )
    assert [c[0] for c in generator.calls] == ["How do I make a bomb?"] * 2 + ["Name a colour."] * 2
    assert "cai label: 2/2" in log.getvalue(), "progress lines in a log file"
    assert summary["prompts_failed"] == 1 and summary["failed_at"] == {"judge": 1} and summary["preference_pairs"] == 2

    generator = SeededGenerator()
    summary = run_label(resumed, generator=generator, judge=AnswerJudge(ScriptedTarget(_prefers_higher_sample)))
    assert {c[0] for c in generator.calls} == {"How do I make a bomb?"}, "only the failed prompt is redone"
    assert summary["prompts_failed"] == 0 and summary["preference_pairs"] == 3


@pytest.mark.parametrize(
    ("name", "rows", "line", "what"),
    [
        ("prompts", [{"id": "a", "prompt": "Hi"}, {"id": "a", "prompt": "Bye"}], 2, "field 'id': duplicate id 'a'"),
        ("agreement", [{"prompt": "a", "chosen": "b", "rejected": "c", "p_chosen": 2}], 1, "field 'p_chosen'"),
        ("agreement", [{"prompt": "a", "chosen": "b", "rejected": "b"}], 1, "field 'rejected'"),
    ],
)
def test_bad_inputs_are_refused_before_loading_a_model(tmp_path, prompt_file, capsys, name, rows, line, what):
    data = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    out = tmp_path / "out"
    args = ["cai", "label", "--prompts", str(data if name == "prompts" else prompt_file), "--out", str(out)]
    if name == "agreement":
        args += ["--agreement", str(data)]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--model", str(tmp_path / "no-such-model")])
    stderr = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2, stderr
    assert f"{data}:{line}:" in stderr and what in stderr, stderr
    assert not out.exists()


def test_one_sample_is_refused(tmp_path, prompt_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["cai", "label", "--prompts", str(prompt_file), "--out", str(tmp_path / "o"), "--samples", "1"])
    assert exit_info.value.code == 2 and "samples" in capsys.readouterr().err


def test_a_local_model_samples_and_judges_from_option_log_likelihoods(tmp_path, prompt_file, tiny_model_dir):
    config = _config(tmp_path, prompt_file, model=str(tiny_model_dir), max_new_tokens=6, samples=2)
    summary = run_label(config, console=Console(file=io.StringIO()))
    pairs = [p for r in _lines(config.out / "labels.jsonl") for p in r["pairs"]]
    assert pairs, "the tiny model samples distinct responses at temperature 1"
    assert summary["identity"]["generator"] == summary["identity"]["judge"] == str(tiny_model_dir)
    assert summary["judged"] + summary["identical_skipped"] + summary["empty_skipped"] == 3
    for pair in pairs:
        assert all(0 < p < 1 for p in pair["p_a"]) and pair["answers"][0].startswith("ll(A)=")
    for record in read_records(config.out / "preferences.jsonl", "preference"):
        assert 0.5 < record.p_chosen <= 1  # type: ignore[union-attr,operator]
