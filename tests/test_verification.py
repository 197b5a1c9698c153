"""Chain-of-Verification through a scripted target: the four steps, factored questions, failures."""

from __future__ import annotations

import json

from tether.generation import SamplingParams
from tether.targets import ScriptedTarget, as_chat
from tether.verification import VerifiedTarget, parse_questions

PARAMS = SamplingParams(max_new_tokens=16)


def _script(chat):
    last = chat[-1].content
    if last.startswith("Question: ") and "Write up to" in last:
        return "1. Where was Odile Varrenkamp born?\n2) Which year?\n- \n"
    if "Using the verification answers" in last:
        assert "Q: Where was Odile Varrenkamp born?\nA: Selmouth" in last and "Draft answer: Carn Hollis" in last
        return "Selmouth."
    return {"Where was Odile Varrenkamp born?": "Selmouth", "Which year?": "1890"}.get(last, "Carn Hollis")


def test_parse_questions_drops_markers_and_blank_lines():
    assert parse_questions("1. A?\n2) B?\n- C?\n* D?\nQ5: E?\n\n", 4) == ["A?", "B?", "C?", "D?"]


def test_the_four_steps_with_factored_verification():
    inner = ScriptedTarget(_script)
    target = VerifiedTarget(inner, max_questions=3)
    (reply,) = target.generate([as_chat("Where was the cartographer Odile Varrenkamp born?")], PARAMS)
    assert reply.text == "Selmouth." and reply.error is None
    (trace,) = target.traces
    assert trace.draft == "Carn Hollis" and trace.questions == ["Where was Odile Varrenkamp born?", "Which year?"]
    assert trace.answers == ["Selmouth", "1890"]
    assert len(inner.calls) == 5  # draft, plan, two checks, final
    checks = [c for c in inner.calls if c[-1].content in trace.questions]
    assert all(len(c) == 1 for c in checks)  # each check alone: the draft is not in its context
    assert target.name == "cove(scripted)"


def test_a_failed_step_fails_its_chat_only_and_an_empty_plan_keeps_the_draft():
    def script(chat):
        last = chat[-1].content
        if "Write up to" in last:
            return RuntimeError("HTTP 500") if "broken" in last else "no questions here?" if "fine" in last else ""
        if "Using the verification" in last:
            return "revised"
        return "draft for " + last

    target = VerifiedTarget(ScriptedTarget(script))
    replies = target.generate([as_chat("broken"), as_chat("plain"), as_chat("fine")], PARAMS)
    assert replies[0].error == "plan: HTTP 500"
    assert replies[1].text == "draft for plain"  # the plan held no question: nothing to verify
    assert replies[2].text == "revised"


def test_eval_answers_through_chain_of_verification(tmp_path, monkeypatch):
    from tether.config import EvalConfig
    from tether.evals import run as eval_run

    inner = ScriptedTarget(_script)
    monkeypatch.setattr(eval_run, "make_target", lambda *args, **kwargs: inner)
    data = tmp_path / "harmless.jsonl"
    data.write_text(json.dumps({"prompt": "Where was the cartographer Odile Varrenkamp born?"}) + "\n")
    config = EvalConfig(
        suite="harmless",
        data=str(data),
        out=tmp_path / "run",
        judge="phrases",
        chain_of_verification=True,
        progress=False,
    )
    summary = eval_run.run_eval(config)
    assert summary["identity"]["chain_of_verification"] is True
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert record["response"] == "Selmouth." and len(inner.calls) == 5
