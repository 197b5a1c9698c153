"""Eval plumbing with scripted targets: rates and intervals, unscored answers, resume, HTTP endpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.data.samples import PromptSample
from tether.generation import SamplingParams
from tether.judges.refusal import RefusalJudge
from tether.runs.store import SampleStore
from tether.stats import bootstrap_mean, rate
from tether.targets import ScriptedTarget

HARMFUL = [PromptSample(f"h{i}", f"harmful request {i}", "refuse", "cyber" if i < 6 else "weapons") for i in range(10)]
SAFE = [PromptSample(f"s{i}", f"safe request {i}", "comply", "homonyms") for i in range(4)]


def _script(chat) -> str:
    text = chat[-1].content
    number = int(text.rsplit(" ", 1)[1])
    if text.startswith("harmful"):
        return "I can't help with that." if number % 2 else "Sure, here is how: first do this."
    return "I'm sorry, but I can't help with that." if number == 0 else "Of course! Here you go."


def _run(tmp_path: Path, samples, target, *, resume=False, batch_size=4) -> list[dict]:
    from tether.evals.prompt_runner import run_prompt_samples

    store = SampleStore(tmp_path / "run", {"suite": "t"}, resume=resume)
    return run_prompt_samples(
        samples,
        suite="t",
        target=target,
        judge=RefusalJudge(layers="phrases"),
        params=SamplingParams(max_new_tokens=8),
        store=store,
        batch_size=batch_size,
    )


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_data():
    small = rate([True, False] * 5)
    large = rate([True, False] * 500)
    assert small.value == large.value == 0.5
    assert small.low < 0.5 < small.high and large.low < 0.5 < large.high
    assert (large.high - large.low) < (small.high - small.low) / 5
    assert rate([True] * 7).to_dict() == {"value": 1.0, "low": 1.0, "high": 1.0, "n": 7}
    assert bootstrap_mean([0.2, 0.4, 0.9], seed=3) == bootstrap_mean([0.2, 0.4, 0.9], seed=3)


def test_rates_per_category_from_a_scripted_target(tmp_path):
    from tether.evals.summary import summarize_prompt_run

    records = _run(tmp_path, HARMFUL + SAFE, ScriptedTarget(_script))
    summary = summarize_prompt_run(records)
    harmful = summary["harmful"]["overall"]
    assert harmful["attack_success"]["value"] == pytest.approx(0.5)  # the even-numbered requests comply
    assert harmful["refusal"]["value"] == pytest.approx(0.5)
    assert summary["harmful"]["categories"]["cyber"]["attack_success"]["n"] == 6
    assert summary["safe"]["overall"]["full_refusal"]["value"] == pytest.approx(0.25)
    saved = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in saved] == [s.id for s in HARMFUL + SAFE]
    assert saved[0]["response"] and saved[0]["verdict"]["judge"] == "phrases" and saved[0]["verdict"]["reason"]


def test_target_errors_and_empty_answers_are_unscored_and_left_out_of_rates(tmp_path):
    from tether.evals.summary import summarize_prompt_run

    script = {s.prompt: "Sure: step one." for s in HARMFUL}
    script[HARMFUL[0].prompt] = RuntimeError("HTTP 500")
    script[HARMFUL[1].prompt] = "   "
    summary = summarize_prompt_run(_run(tmp_path, HARMFUL, ScriptedTarget(script)))
    overall = summary["harmful"]["overall"]
    assert overall["unscored"] == 2 and overall["scored"] == 8
    assert overall["attack_success"]["value"] == 1.0  # not diluted by the two unscorable answers
    assert any("HTTP 500" in reason for reason in summary["unscored_reasons"])
    assert any("empty" in reason for reason in summary["unscored_reasons"])


def test_a_stopped_run_resumes_without_asking_again(tmp_path):
    calls = []

    class Flaky(ScriptedTarget):
        def generate(self, chats, params):
            calls.append(len(chats))
            if len(calls) == 2:
                raise KeyboardInterrupt
            return super().generate(chats, params)

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, HARMFUL, Flaky(_script))
    path = tmp_path / "run" / "samples.jsonl"
    assert len(path.read_text().splitlines()) == 4  # the first batch was saved
    with path.open("a") as handle:
        handle.write('{"id": "h4", "suite"')  # a line cut short by the stop
    target = ScriptedTarget(_script)
    records = _run(tmp_path, HARMFUL, target, resume=True)
    assert len(target.calls) == 6, "only the samples not yet saved are asked again"
    assert [r["id"] for r in records] == [s.id for s in HARMFUL]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_resume_refuses_other_settings_and_an_existing_run_needs_a_flag(tmp_path):
    from tether.errors import TetherError

    _run(tmp_path, HARMFUL[:2], ScriptedTarget(_script))
    with pytest.raises(TetherError, match="--resume"):
        SampleStore(tmp_path / "run", {"suite": "t"}, resume=False)
    with pytest.raises(TetherError, match="other settings"):
        SampleStore(tmp_path / "run", {"suite": "other"}, resume=True)


def test_eval_command_against_an_http_endpoint_with_the_official_client(tmp_path):
    from tests.conftest import run_endpoint_eval
    from tests.openai_stub import openai_stub

    data = tmp_path / "advbench.csv"
    data.write_text("goal,target\n" + "".join(f"harmful request {i},Sure\n" for i in range(6)))

    def reply(messages):
        assert messages[-1]["role"] == "user"
        return _script([_Msg(messages[-1]["content"])])

    with openai_stub(reply, api_key="sk-test") as (url, requests):
        result = run_endpoint_eval(
            "harmful",
            data,
            tmp_path / "out",
            url,
            "--judge",
            "phrases",
            "--no-progress",
            model="stub-model",
            env={"TETHER_TARGET_API_KEY": "sk-test"},
        )
    assert result.returncode == 0, result.stderr
    assert len(requests) == 6 and all(r["auth"] == "Bearer sk-test" for r in requests)
    assert requests[0]["body"]["model"] == "stub-model" and requests[0]["body"]["temperature"] == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["harmful"]["overall"]["attack_success"]["value"] == pytest.approx(0.5)
    assert "<svg" in (tmp_path / "out" / "report.html").read_text()


class _Msg:
    def __init__(self, content: str) -> None:
        self.content = content
        self.role = "user"


def test_bad_eval_data_fails_before_any_model_loads(tmp_path):
    from tests.conftest import run_cli

    data = tmp_path / "bad.csv"
    data.write_text("goal,target\nok request,Sure\n,Sure\n")
    result = run_cli(
        "eval", "--suite", "harmful", "--data", str(data), "--out", str(tmp_path / "o"), "--model", "/nonexistent/model"
    )
    assert result.returncode == 2
    assert "bad.csv:3" in result.stderr
    assert not (tmp_path / "o" / "samples.jsonl").exists()
    unknown = run_cli("eval", "--suite", "nope", "--data", str(data), "--out", str(tmp_path / "o"))
    assert unknown.returncode != 0 and "unknown eval suite" in unknown.stderr and "harmful" in unknown.stderr


@pytest.mark.slow  # 9-10 s: `make test-slow` keeps the default suite under 10 minutes
def test_eval_rescore_rejudges_stored_answers_without_generating(tmp_path):
    from tests.conftest import run_cli, run_endpoint_eval
    from tests.openai_stub import openai_stub

    data = tmp_path / "advbench.csv"
    data.write_text("goal,target\n" + "".join(f"harmful request {i},Sure\n" for i in range(4)))
    replies = ["I can't help with that.", "Sure: step one.", "", "Sure: step two."]
    with openai_stub(lambda messages: replies[int(messages[-1]["content"].rsplit(" ", 1)[1])]) as (url, requests):
        first = run_endpoint_eval(
            "harmful",
            data,
            tmp_path / "out",
            url,
            "--judge",
            "phrases",
            "--no-progress",
        )
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "out" / "samples.jsonl").read_text()
    # Hand-edit one stored answer (as if judged by an older judge) and rescore: only the verdicts change.
    rows = [json.loads(line) for line in before.splitlines()]
    rows[1]["verdict"] = {"label": "refuses", "reason": "stale", "judge": "old", "confidence": None}
    (tmp_path / "out" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    again = run_cli("eval-rescore", "--out", str(tmp_path / "out"), "--judge", "phrases")
    assert again.returncode == 0, again.stderr
    after = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert [r["response"] for r in after] == [r["response"] for r in rows]
    assert [r["verdict"]["label"] for r in after] == ["refuses", "complies", "unscored", "complies"]
    assert len(requests) == 4, "rescoring sends nothing to the target"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["harmful"]["overall"]["attack_success"]["value"] == pytest.approx(2 / 3)


def test_eval_compare_puts_harm_and_over_refusal_runs_of_a_model_on_one_scatter(tmp_path):
    from tests.conftest import run_cli
    from tether.evals.summary import summarize_prompt_run

    def run(name: str, target: str, samples, script) -> Path:
        records = _run(tmp_path / name, samples, ScriptedTarget(script))
        summary = summarize_prompt_run(records)
        summary["identity"] = {"target": target, "suite": "harmful" if samples[0].expected == "refuse" else "harmless"}
        (tmp_path / name / "run" / "summary.json").write_text(json.dumps(summary))
        return tmp_path / name / "run"

    folders = [
        run("a", "base", HARMFUL, _script),
        run("b", "base", SAFE, _script),
        run("c", "tuned", HARMFUL, lambda chat: "I can't help with that."),
    ]
    result = run_cli("eval-compare", *map(str, folders), "--out", str(tmp_path / "cmp.html"))
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "cmp.html").read_text()
    assert "harm vs over-refusal" in html and "tuned" in html
    bad = run_cli("eval-compare", str(tmp_path), "--out", str(tmp_path / "x.html"))
    assert bad.returncode != 0 and "summary.json" in bad.stderr
