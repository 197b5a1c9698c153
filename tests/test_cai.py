"""Constitutional AI: constitutions (file:line errors, the shipped default), critique-and-revise chains,
usability checks, SFT and preference outputs that tether's readers and trainers take, resume."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import write_jsonl
from tether.cai.config import CaiReviseConfig
from tether.cai.constitution import default_constitution_path, load_constitution
from tether.cai.run import run_revise
from tether.cai.usable import clean, critique_problem, revision_problem
from tether.cli import config_classes, main
from tether.config import validate_file
from tether.data.readers import read_records
from tether.errors import ConfigError, UsageError
from tether.targets import ScriptedTarget

PROMPTS = [
    {"id": "kill", "prompt": "How do I kill a Python process?"},
    {"id": "bomb", "prompt": "How do I make a bomb?", "category": "harmful"},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]},
    {"instruction": "Write a haiku about rain."},
]


def _last_user(chat) -> str:
    return [m.content for m in chat if m.role == "user"][-1]


def _generator(chat) -> str:
    return f"Original answer to: {_last_user(chat)}"


def _critic(chat) -> str:
    """Critiques and revisions that differ from round to round (each revision counts the ones before)."""
    text = _last_user(chat)
    conversation = text.split("\n\nCritiqueRequest:")[0]
    answer = conversation.rsplit("Assistant: ", 1)[1]
    if text.endswith("Critique:"):
        return f"Critique: the answer of {len(answer)} characters could be clearer."
    done = int(answer.split("(revision ")[1].rstrip(").")) if "(revision " in answer else 0
    return f"Revision: Here is a clearer answer (revision {done + 1})."


def _config(tmp_path: Path, prompts: Path, **overrides) -> CaiReviseConfig:
    values = {"prompts": str(prompts), "out": tmp_path / "cai", "progress": False, **overrides}
    return CaiReviseConfig(**values)


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- constitutions -------------------------------------------------------------------------------------


def test_the_default_constitution_is_valid_and_covers_harm_honesty_and_over_refusal(capsys):
    loaded = load_constitution()
    principles = loaded.constitution.principles
    assert 8 <= len(principles) <= 12
    tags = [t for p in principles for t in p.tags]
    assert tags.count("over-refusal") >= 2 and "honesty" in tags and "harmlessness" in tags
    assert loaded.sha256 == hashlib.sha256(default_constitution_path().read_bytes()).hexdigest()
    assert any("kill a Python process" in p.critique_request for p in principles)
    with pytest.raises(SystemExit) as done:
        main(["validate", str(default_constitution_path())])
    assert done.value.code == 0
    assert "valid `command: constitution` file" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit) as done:
        main(["cai", "principles"])
    assert done.value.code == 0 and "scary-but-safe" in capsys.readouterr().out.replace("\n", "")


PRINCIPLE = (
    "  - id: {id}\n"
    "    critique_request: Identify ways the response is harmful.\n"
    "    revision_request: Please rewrite the response to remove harm.\n"
    "    preference_question: Which response is less harmful?\n"
)


@pytest.mark.parametrize(
    ("body", "line", "field", "message"),
    [
        (PRINCIPLE.format(id="a") + "    critique: typo\n", 8, "principles.0.critique", "Extra inputs"),
        (
            PRINCIPLE.format(id="a") + "  - id: b\n    revision_request: x\n    preference_question: y\n",
            8,
            "principles.1.critique_request",
            "Field required",
        ),
        ("", 3, "principles", "at least one principle"),
        (
            PRINCIPLE.format(id="a") + PRINCIPLE.format(id="b") + PRINCIPLE.format(id="a"),
            12,
            "principles.2.id",
            "duplicate",
        ),
        (
            PRINCIPLE.format(id="a").replace("Please rewrite the response to remove harm.", "'  '"),
            6,
            "principles.0.revision_request",
            "is empty",
        ),
        (PRINCIPLE.format(id="Bad Id"), 4, "principles.0.id", "should match pattern"),
    ],
)
def test_bad_constitutions_are_refused_with_file_line_and_field(tmp_path, body, line, field, message):
    path = tmp_path / "constitution.yaml"
    path.write_text("command: constitution\nname: test\n" + ("principles:\n" + body if body else "principles: []\n"))
    for check in (lambda: validate_file(path, config_classes()), lambda: load_constitution(path)):
        with pytest.raises(ConfigError) as err:
            check()
        assert (err.value.file, err.value.line, err.value.field) == (str(path), line, field), str(err.value)
        assert message in str(err.value)


def test_templates_must_use_exactly_their_placeholders(tmp_path):
    path = tmp_path / "constitution.yaml"
    text = "command: constitution\nname: t\ncritique_template: '{conversation} {oops}'\nprinciples:\n"
    path.write_text(text + PRINCIPLE.format(id="a"))
    with pytest.raises(ConfigError, match=r"unknown placeholder \{oops\}") as err:
        load_constitution(path)
    assert err.value.line == 3
    path.write_text(text.replace(" {oops}", "") + PRINCIPLE.format(id="a"))
    with pytest.raises(ConfigError, match=r"missing placeholder \{critique_request\}"):
        load_constitution(path)


def test_cai_revise_refuses_a_bad_constitution_before_loading_a_model(tmp_path, prompt_file, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("command: constitution\nname: t\nprinciples:\n" + PRINCIPLE.format(id="a") + "    weight: 2\n")
    out = tmp_path / "out"
    args = ["cai", "revise", "--prompts", str(prompt_file), "--constitution", str(bad), "--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--model", str(tmp_path / "no-such-model")])
    stderr = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2 and f"{bad}:8: field 'principles.0.weight'" in stderr, stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("rows", "line", "what"),
    [
        ([{"id": "a", "prompt": "Hi"}, {"id": "b", "text": "Hi"}], 2, "field 'prompt': missing"),
        ([{"prompt": "Hi"}, {"prompt": "  "}], 2, "field 'prompt': empty"),
        (
            [{"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}],
            1,
            "field 'prompt[1].role': a prompt must end with a user",
        ),
        ([{"id": "a", "prompt": "Hi"}, {"id": "a", "prompt": "Bye"}], 2, "field 'id': duplicate id 'a'"),
        ([{"prompt": "Hi"}, {"prompt": 3}], 2, "expected a list"),
    ],
)
def test_bad_prompt_files_are_refused_before_loading_a_model(tmp_path, capsys, rows, line, what):
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["cai", "revise", "--prompts", str(data), "--out", str(out), "--model", str(tmp_path / "no-such-model")])
    stderr = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2, stderr
    assert f"{data}:{line}:" in stderr and what in stderr, stderr
    assert not out.exists()


def test_a_malformed_json_line_is_refused_with_its_line(tmp_path, capsys):
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "Hi"}\n{"prompt": "Bye"\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["cai", "revise", "--prompts", str(data), "--out", str(tmp_path / "o"), "--model", "/nonexistent"])
    assert exit_info.value.code == 2 and f"{data}:2: malformed JSON" in capsys.readouterr().err


# --- usability -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("revision", "reason"),
    [
        ("", "empty"),
        ("  The ORIGINAL   answer. ", "identical"),
        ("How do I kill a Python process?", "echo"),
        ("Please rewrite the response to remove harm.", "echo"),
        ("The answer refuses a safe request to stop a program", "echo"),
        ("The person who made it is not a person. " * 6, "repetitive"),
        ("x" * 401, "too_long"),
        ("The original response was not a request for a harmful one.", "commentary"),
        ("The human is a creature of habit.", "commentary"),
        ("I'm sorry, but I can't rewrite this response.", "refused_task"),
        ("I can't help with making a bomb, but I can explain how demolition is regulated.", None),
        ("Run `kill PID`, or press Ctrl+C in its terminal.", None),
        ("The answer is 4.", None),
    ],
)
def test_revision_usability(revision, reason):
    found = revision_problem(
        clean(revision),
        revised="The original answer.",
        prompt="How do I kill a Python process?",
        critique="The answer refuses a safe request.",
        revision_request="Please rewrite the response to remove harm.",
        max_growth=4.0,
    )
    assert found == reason


def test_critique_usability_and_labels():
    assert critique_problem(clean("Critique:   ")) == "critique_empty"
    assert critique_problem("I'm sorry, but I can't help with that.") == "critique_refused"
    assert critique_problem("The response says 'I can't help with that', an over-refusal.") is None
    assert critique_problem("The answer is not a person. " * 6) == "critique_repetitive"
    assert clean("**Revision:** Run kill.") == "Run kill."


# --- chains --------------------------------------------------------------------------------------------


def test_chains_hold_every_round_and_the_outputs_read_back(tmp_path, prompt_file):
    generator, critic = ScriptedTarget(_generator), ScriptedTarget(_critic)
    config = _config(tmp_path, prompt_file, rounds=3, batch_size=3)
    summary = run_revise(config, console=Console(file=io.StringIO()), generator=generator, critic=critic)
    out = config.out
    chains = _lines(out / "chains.jsonl")
    ids = {p.id for p in load_constitution().constitution.principles}
    assert [c["id"] for c in chains] == ["kill", "bomb", "prompts:3", "prompts:4"]
    assert chains[2]["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert chains[3]["prompt"] == [{"role": "user", "content": "Write a haiku about rain."}]
    for chain in chains:
        assert chain["error"] is None and chain["prompt_source"].startswith(f"{prompt_file}:")
        assert chain["response"].startswith("Original answer to:")
        rounds = chain["rounds"]
        assert [r["round"] for r in rounds] == [1, 2, 3]
        assert len({r["principle"] for r in rounds}) == 3 and {r["principle"] for r in rounds} <= ids
        for number, r in enumerate(rounds):
            keys = ("critique_prompt", "critique", "revision_prompt", "revision")
            assert all(isinstance(r[k], str) and r[k] for k in keys) and r["usable"] and r["reason"] is None
            revised = chain["response"] if number == 0 else rounds[number - 1]["revision"]
            assert f"Assistant: {revised}\n\nCritiqueRequest: " in r["critique_prompt"], "each round revises the last"
            assert r["critique_prompt"].endswith("\n\nCritique:") and "Human: " in r["critique_prompt"]
            assert r["revision_prompt"].startswith(r["critique_prompt"] + " " + r["critique"] + "\n\nRevisionRequest: ")
            assert r["revision_prompt"].endswith("\n\nRevision:")
            assert not r["critique"].startswith("Critique:") and not r["revision"].startswith("Revision:")
        assert chain["final"] == rounds[-1]["revision"] and chain["final_from"] == 3
    assert "System: Be brief.\n\nHuman: Name a colour." in chains[2]["rounds"][0]["critique_prompt"]
    assert summary["prompts"] == 4 and summary["rounds"] == 12 and summary["revisions_usable"] == 12
    assert summary["sft_rows"] == 4 and summary["preference_pairs"] == 4
    assert json.loads((out / "summary.json").read_text())["unusable"]["identical"] == 0

    sft = read_records(out / "sft.jsonl", "conversation")
    assert sft[0].messages[-1].content == chains[0]["final"]
    pairs = read_records(out / "preferences.jsonl", "preference")
    assert pairs[0].chosen[0].content == chains[0]["final"] and pairs[0].rejected[0].content == chains[0]["response"]
    sha = hashlib.sha256(default_constitution_path().read_bytes()).hexdigest()
    for row in _lines(out / "sft.jsonl") + _lines(out / "preferences.jsonl"):
        assert row["source"].startswith("cai-revise:") and row["meta"]["constitution_sha256"] == sha
        assert row["meta"]["generator"] == "scripted" and len(row["meta"]["principles"]) == 3
        assert row["meta"]["prompt_source"].startswith(f"{prompt_file}:")

    again = tmp_path / "again"
    run_revise(_config(tmp_path, prompt_file, rounds=3, out=again), generator=generator, critic=critic)
    principles = [[r["principle"] for r in c["rounds"]] for c in chains]
    assert principles == [[r["principle"] for r in c["rounds"]] for c in _lines(again / "chains.jsonl")]
    assert len({tuple(p) for p in principles}) > 1, "each prompt draws its own order"


def test_unusable_revisions_are_counted_and_the_last_usable_one_is_kept(tmp_path):
    prompts = write_jsonl(
        tmp_path / "p.jsonl",
        [{"id": i, "prompt": i} for i in ("fine", "same", "refuse", "late-empty", "empty-original")],
    )

    def generator(chat):
        return "" if _last_user(chat) == "empty-original" else f"answer to {_last_user(chat)}"

    def critic(chat):
        text = _last_user(chat)
        prompt = text.split("\n\n")[0].removeprefix("Human: ")
        answer = text.split("\n\nCritiqueRequest:")[0].rsplit("Assistant:", 1)[1].strip()
        if text.endswith("Critique:"):
            return "I'm sorry, but I can't help with that." if prompt == "refuse" else "It could say more."
        if prompt == "same":
            return answer
        if prompt == "late-empty" and answer.startswith("better"):
            return "Revision:"
        return f"better: {prompt} {len(answer)}"

    summary = run_revise(
        _config(tmp_path, prompts, rounds=2), generator=ScriptedTarget(generator), critic=ScriptedTarget(critic)
    )
    chains = {c["id"]: c for c in _lines(tmp_path / "cai" / "chains.jsonl")}
    assert [r["reason"] for r in chains["same"]["rounds"]] == ["identical", "identical"]
    assert [r["reason"] for r in chains["refuse"]["rounds"]] == ["critique_refused"] * 2
    assert chains["refuse"]["rounds"][0]["revision_prompt"] is None, "no revision without a usable critique"
    assert [r["usable"] for r in chains["late-empty"]["rounds"]] == [True, False]
    assert chains["late-empty"]["final"] == chains["late-empty"]["rounds"][0]["revision"]
    assert chains["late-empty"]["final_from"] == 1
    for kept in ("same", "refuse"):
        assert chains[kept]["final"] == chains[kept]["response"] and chains[kept]["final_from"] == 0
    assert chains["empty-original"]["final_from"] == 2
    assert {k: n for k, n in summary["unusable"].items() if n} == {"critique_refused": 2, "empty": 1, "identical": 2}
    assert summary["revisions_usable"] == 5 and summary["final_from_original"] == 2
    pairs = [r["source"] for r in _lines(tmp_path / "cai" / "preferences.jsonl")]
    assert pairs == ["cai-revise:fine", "cai-revise:late-empty"], "no pair without a revision or an original"
    assert summary["sft_rows"] == 3 and summary["rows_skipped"] == {
        "no usable revision": 2,
        "preference: empty original response": 1,
    }, "an unrevised answer is no training target"


# --- resume --------------------------------------------------------------------------------------------


def test_an_interrupted_run_resumes_without_redoing_prompts(tmp_path, prompt_file):
    calls = {"n": 0}

    def crashing_critic(chat):
        calls["n"] += 1
        if calls["n"] > 4:  # batch 1 (2 prompts x 1 round x critique + revision), then the crash
            raise KeyboardInterrupt
        return _critic(chat)

    config = _config(tmp_path, prompt_file, rounds=1, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        run_revise(config, generator=ScriptedTarget(_generator), critic=ScriptedTarget(crashing_critic))
    assert [c["id"] for c in _lines(config.out / "chains.jsonl")] == ["kill", "bomb"]

    with pytest.raises(UsageError, match="--resume"):
        run_revise(config, generator=ScriptedTarget(_generator), critic=ScriptedTarget(_critic))
    with pytest.raises(UsageError, match="other settings"):
        run_revise(config.model_copy(update={"resume": True, "rounds": 2}), generator=ScriptedTarget(_generator))

    def failing_generator(chat):
        return RuntimeError("HTTP 500") if _last_user(chat) == "Name a colour." else _generator(chat)

    generator, log = ScriptedTarget(failing_generator), io.StringIO()
    resumed = config.model_copy(update={"resume": True, "progress": True})
    summary = run_revise(resumed, console=Console(file=log), generator=generator, critic=ScriptedTarget(_critic))
    assert [_last_user(c) for c in generator.calls] == ["Name a colour.", "Write a haiku about rain."]
    assert "cai revise: 2/2" in log.getvalue(), "progress lines in a log file"
    assert summary["chains_failed"] == 1 and summary["failed_at"] == {"response": 1} and summary["sft_rows"] == 3

    generator = ScriptedTarget(_generator)
    summary = run_revise(resumed, generator=generator, critic=ScriptedTarget(_critic))
    assert [_last_user(c) for c in generator.calls] == ["Name a colour."], "only the failed chain is redone"
    assert summary["chains_failed"] == 0 and summary["sft_rows"] == 4
    assert [c["id"] for c in _lines(config.out / "chains.jsonl")] == [
        "kill",
        "bomb",
        "prompts:3",
        "prompts:4",
        "prompts:3",
    ]
    assert len(_lines(config.out / "sft.jsonl")) == 4


# --- generators and critics -----------------------------------------------------------------------------


def test_an_endpoint_generator_and_an_endpoint_critic(tmp_path, prompt_file):
    from tests.openai_stub import openai_stub

    class Msg:
        def __init__(self, m):
            self.role, self.content = m["role"], m["content"]

    out = tmp_path / "cai"
    with (
        openai_stub(lambda messages: _generator([Msg(m) for m in messages])) as (gen_url, gen_requests),
        openai_stub(lambda messages: _critic([Msg(m) for m in messages])) as (critic_url, critic_requests),
    ):
        args = ["cai", "revise", "--prompts", str(prompt_file), "--out", str(out), "--rounds", "2", "--no-progress"]
        args += ["--endpoint", gen_url, "--endpoint-model", "gen", "--critic-endpoint", critic_url]
        with pytest.raises(SystemExit) as done:
            main([*args, "--critic-endpoint-model", "critic"])
        assert done.value.code == 0
    assert len(gen_requests) == 4 and len(critic_requests) == 4 * 2 * 2
    assert {r["body"]["model"] for r in critic_requests} == {"critic"}
    assert critic_requests[0]["body"]["messages"][0]["content"].endswith("Critique:")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["identity"]["generator"] == f"gen@{gen_url}"
    assert summary["identity"]["critic"] == f"critic@{critic_url}" and summary["preference_pairs"] == 4
    assert (out / "config.yaml").is_file() and json.loads((out / "tether-run.json").read_text())["kind"] == "cai revise"


@pytest.mark.parametrize(("command", "data"), [("sft", "sft.jsonl"), ("dpo", "preferences.jsonl")])
def test_the_outputs_train_one_step(tmp_path, prompt_file, tiny_model_dir, command, data):
    config = _config(tmp_path, prompt_file)
    run_revise(config, generator=ScriptedTarget(_generator), critic=ScriptedTarget(_critic))
    common = ["--model", str(tiny_model_dir), "--max-steps", "1", "--batch-size", "2", "--no-progress"]
    with pytest.raises(SystemExit) as done:
        main([command, "--data", str(config.out / data), "--out", str(tmp_path / command), *common])
    assert done.value.code == 0
    assert (tmp_path / command / "model").is_dir()


def test_a_local_model_is_generator_and_critic(tmp_path, prompt_file, tiny_model_dir):
    config = _config(tmp_path, prompt_file, model=str(tiny_model_dir), rounds=1, max_new_tokens=6)
    summary = run_revise(config.model_copy(update={"critique_max_new_tokens": 6}), console=Console(file=io.StringIO()))
    chains = _lines(config.out / "chains.jsonl")
    assert len(chains) == 4 and all(len(c["rounds"]) == 1 and c["error"] is None for c in chains)
    assert summary["identity"]["generator"] == summary["identity"]["critic"] == str(tiny_model_dir)
    assert summary["rounds"] == 4


def test_a_critic_endpoint_without_its_model_name_is_refused_at_its_line(tmp_path):
    path = tmp_path / "cai.yaml"
    path.write_text("command: cai revise\nprompts: p.jsonl\nout: o\ncritic_endpoint: http://localhost:8000/v1\n")
    with pytest.raises(ConfigError, match="--critic-endpoint-model") as err:
        validate_file(path, config_classes())
    assert (err.value.line, err.value.field) == (4, "critic_endpoint")
