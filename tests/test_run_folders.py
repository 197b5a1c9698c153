"""Run folders that cannot be mixed up: markers, refusals with one line and exit code 2, --overwrite that
leaves no old result beside a crashed new run, resume past a damaged checkpoint, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import PAIR_ROWS, run_cli, run_endpoint_eval, write_jsonl
from tether.atomic import atomic_folder, atomic_write_json, atomic_write_text, replace_folder
from tether.errors import UsageError
from tether.runs.folders import MARKER, check_output_file, check_run_folder, open_run_folder, run_kind


def _advbench(path: Path, n: int = 4) -> Path:
    path.write_text("goal,target\n" + "".join(f"harmful request {i},Sure\n" for i in range(n)))
    return path


def _reply(messages) -> str:
    number = int(messages[-1]["content"].rsplit(" ", 1)[1])
    return "I can't help with that." if number % 2 else "Sure: step one."


def _one_line_usage_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished dpo run and a finished eval run (against a stub endpoint), made through the CLI."""
    from tests.openai_stub import openai_stub

    root = tmp_path_factory.mktemp("runs")
    pairs = write_jsonl(root / "pairs.jsonl", PAIR_ROWS)
    dpo = root / "dpo"
    args = ["--model", str(tiny_model_dir), "--data", str(pairs), "--out", str(dpo), "--max-steps", "1"]
    made = run_cli("dpo", *args, "--batch-size", "2", "--no-progress")
    assert made.returncode == 0, made.stderr[-3000:]
    data = _advbench(root / "advbench.csv")
    with openai_stub(_reply) as (url, _):
        made = run_endpoint_eval("harmful", data, root / "eval", url, "--judge", "phrases", "--no-progress")
    assert made.returncode == 0, made.stderr[-3000:]
    return {"dpo": dpo, "eval": root / "eval", "pairs": pairs, "data": data}


def test_every_run_is_marked_with_its_kind(runs):
    for kind in ("dpo", "eval"):
        marker = json.loads((runs[kind] / MARKER).read_text())
        assert marker["kind"] == kind and marker["tether_version"] and marker["created"]
        assert run_kind(runs[kind]) == kind


def test_eval_refuses_a_finished_dpo_run(runs, tmp_path):
    from tests.openai_stub import openai_stub

    before = _snapshot(runs["dpo"])
    with openai_stub(_reply) as (url, requests):
        result = run_endpoint_eval("harmful", runs["data"], runs["dpo"], url, "--judge", "phrases", "--no-progress")
    line = _one_line_usage_error(result)
    assert "holds a `tether dpo` run" in line, line
    assert not requests, "refused before any work"
    assert _snapshot(runs["dpo"]) == before, "the dpo run is untouched (its report.html above all)"


def test_dpo_refuses_an_eval_run(runs, tiny_model_dir):
    before = _snapshot(runs["eval"])
    args = ["--model", str(tiny_model_dir), "--data", str(runs["pairs"]), "--out", str(runs["eval"])]
    result = run_cli("dpo", *args, "--max-steps", "1", "--batch-size", "2", "--no-progress", "--overwrite")
    line = _one_line_usage_error(result)
    assert "holds a `tether eval` run" in line, line
    assert _snapshot(runs["eval"]) == before


def test_a_run_of_the_same_kind_needs_a_flag(runs):
    from tests.openai_stub import openai_stub

    before = _snapshot(runs["eval"])
    with openai_stub(_reply) as (url, requests):
        result = run_endpoint_eval("harmful", runs["data"], runs["eval"], url, "--judge", "phrases", "--no-progress")
    line = _one_line_usage_error(result)
    assert "already holds a finished run of `tether eval`" in line and "--resume" in line and "--overwrite" in line
    assert not requests and _snapshot(runs["eval"]) == before


def test_a_folder_of_unrelated_files_is_refused(runs, tmp_path):
    from tests.openai_stub import openai_stub

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    with openai_stub(_reply) as (url, requests):
        plain = run_endpoint_eval("harmful", runs["data"], folder, url, "--judge", "phrases", "--no-progress")
        forced = run_endpoint_eval(
            "harmful", runs["data"], folder, url, "--judge", "phrases", "--no-progress", "--overwrite"
        )
    for result in (plain, forced):
        line = _one_line_usage_error(result)
        assert "not empty and holds no tether run (notes.txt)" in line, line
    assert not requests and sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_a_file_where_a_folder_is_expected_and_a_folder_where_a_file_is(runs, tmp_path):
    file = tmp_path / "a-file"
    file.write_text("x")
    data = str(runs["data"])
    result = run_cli("eval", "--suite", "harmful", "--data", data, "--out", str(file), "--judge", "phrases")
    assert "is a file" in _one_line_usage_error(result)
    assert file.read_text() == "x"

    rows = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "Hi", "response": "Hello!"}])
    folder = tmp_path / "folder"
    folder.mkdir()
    result = run_cli("judge", "refusal", "--input", str(rows), "--output", str(folder), "--judge", "phrases")
    assert "is a folder" in _one_line_usage_error(result)
    assert not list(folder.iterdir())


@pytest.mark.slow  # 9-10 s: `make test-slow` keeps the default suite under 10 minutes
def test_eval_rescore_works_only_on_an_eval_run(runs, tmp_path):
    legacy_redteam = tmp_path / "campaign"
    legacy_redteam.mkdir()
    (legacy_redteam / "run.json").write_text(json.dumps({"command": "redteam", "target": "m"}))
    (legacy_redteam / "samples.jsonl").write_text("")
    for folder, held in ((legacy_redteam, "`tether redteam`"), (runs["dpo"], "`tether dpo`")):
        before = _snapshot(folder)
        result = run_cli("eval-rescore", "--out", str(folder), "--judge", "phrases")
        line = _one_line_usage_error(result)
        assert held in line and "eval-rescore" in line, line
        assert _snapshot(folder) == before


def test_overwrite_then_a_crash_leaves_no_old_result_beside_the_new_run(tmp_path, monkeypatch):
    from tests.openai_stub import openai_stub
    from tether.cli import main

    data, out = _advbench(tmp_path / "advbench.csv"), tmp_path / "run"
    args = ["eval", "--suite", "harmful", "--data", str(data), "--out", str(out), "--judge", "phrases"]
    with openai_stub(_reply) as (url, _):
        endpoint = ["--endpoint", url, "--endpoint-model", "m", "--no-progress"]
        with pytest.raises(SystemExit) as done:
            main([*args, *endpoint])
        assert done.value.code == 0
        assert (out / "summary.json").is_file() and (out / "report.html").is_file()

        def crash(records, **judges):
            raise RuntimeError("crash after the answers were stored")

        monkeypatch.setattr("tether.evals.summary.summarize_prompt_run", crash)  # the refusal scorer reads it there
        with pytest.raises(RuntimeError, match="crash"):
            main([*args, *endpoint, "--overwrite", "--max-new-tokens", "7"])
    assert not (out / "summary.json").exists() and not (out / "report.html").exists()
    assert json.loads((out / "run.json").read_text())["max_new_tokens"] == 7, "only the new, partial run is there"
    assert len((out / "samples.jsonl").read_text().splitlines()) == 4
    assert run_kind(out) == "eval"


def _sft(tiny_model_dir: Path, chat_file: Path, out: Path, **overrides):
    from tether.config import SFTConfig

    values = {"max_steps": 1, "batch_size": 4, "progress": False, **overrides}
    return SFTConfig(model=str(tiny_model_dir), data=str(chat_file), out=out, **values)


def test_training_overwrite_then_a_crash_leaves_no_old_report(tmp_path, tiny_model_dir, chat_file, monkeypatch):
    from tether.train.sft import run_sft

    out = tmp_path / "run"
    run_sft(_sft(tiny_model_dir, chat_file, out))
    assert (out / "report.html").is_file() and (out / "model").is_dir()

    def crash(*args, **kwargs):
        raise RuntimeError("crash before the end")

    monkeypatch.setattr("tether.train.sft.finish", crash)
    with pytest.raises(RuntimeError, match="crash"):
        run_sft(_sft(tiny_model_dir, chat_file, out, overwrite=True, max_steps=2))
    assert not (out / "report.html").exists() and not (out / "model").exists()
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2], "metrics of the new run only"
    assert run_kind(out) == "sft"


@pytest.mark.slow  # 20-45 s: `make test-slow` keeps the default suite under 10 minutes
def test_resume_falls_back_from_a_damaged_checkpoint(tmp_path, tiny_model_dir, chat_file):
    out = tmp_path / "run"
    base = ["sft", "--model", str(tiny_model_dir), "--data", str(chat_file), "--out", str(out)]
    base += ["--batch-size", "4", "--save-every", "1", "--keep-checkpoints", "3", "--no-progress"]
    first = run_cli(*base, "--max-steps", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    newest = out / "checkpoints" / "step-00000002" / "trainable.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as by a full disk or a bad copy
    (out / MARKER).unlink(missing_ok=True)  # and a folder from before the marker: recognised by its config.yaml
    resumed = run_cli(*base, "--max-steps", "3", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    note = " ".join(resumed.stderr.split())
    assert "skipped damaged checkpoint" in note and "step-00000002" in note, note
    assert "resuming from" in note and "step-00000001 (step 1)" in note, note
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert json.loads((out / MARKER).read_text())["kind"] == "sft"

    for path in (out / "checkpoints").glob("step-*/trainable.safetensors"):
        path.write_bytes(b"\0" * 16)
    broken = run_cli(*base, "--max-steps", "4", "--resume")
    lines = [line for line in broken.stderr.splitlines() if line.strip()]
    assert broken.returncode != 0 and "Traceback" not in broken.stderr and len(lines) == 1, broken.stderr[-3000:]
    assert "no checkpoint" in lines[0] and "can be read" in lines[0]


@pytest.mark.parametrize(
    ("files", "kind"),
    [
        ({"config.yaml": "command: dpo\nmodel: x\n", "model/config.json": "{}"}, "dpo"),
        ({"config.yaml": "command: rm train\n"}, "rm train"),
        ({"run.json": json.dumps({"command": "redteam"}), "samples.jsonl": ""}, "redteam"),
        ({"run.json": json.dumps({"suite": "harmful"}), "samples.jsonl": ""}, "eval"),
        ({"eval.json": "{}", "report.html": ""}, "rm eval"),
        ({"notes.txt": "x"}, None),
        ({}, None),
    ],
)
def test_folders_from_before_the_marker_are_recognised(tmp_path, files, kind):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert run_kind(tmp_path) == kind


def test_folder_policy(tmp_path):
    out = tmp_path / "run"
    check_run_folder(out, "sft")  # a new folder
    open_run_folder(out, "sft")
    (out / "metrics.jsonl").write_text("{}\n")
    (out / "report.html").write_text("old")
    (out / "mine.txt").write_text("kept")
    (out / ".report.html.1234abcd.tmp").write_text("left by a crash")
    with pytest.raises(UsageError, match="already holds an unfinished run"):
        check_run_folder(out, "sft")
    with pytest.raises(UsageError, match="holds a `tether sft` run"):
        check_run_folder(out, "dpo", overwrite=True)
    check_run_folder(out, "sft", resume=True)
    open_run_folder(out, "sft", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "mine.txt"])
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".DS_Store").write_text("")
    check_run_folder(hidden, "eval")  # hidden files alone do not make a folder non-empty
    open_run_folder(tmp_path / "rm", "rm eval")
    (tmp_path / "rm" / "eval.json").write_text("{}")
    with pytest.raises(UsageError, match="finished run of `tether rm eval`; pass --overwrite to replace it"):
        check_run_folder(tmp_path / "rm", "rm eval")
    with pytest.raises(UsageError, match="is a folder"):
        check_output_file(tmp_path)
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_output_file(tmp_path / "run" / "mine.txt" / "out.jsonl")


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    atomic_write_json(path, {"v": 1})
    atomic_write_json(path, {"v": "é"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"v": "é"}

    def fail(*_):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr("tether.atomic.os.replace", fail)
        with pytest.raises(OSError, match="disk full"):
            atomic_write_text(path, "half")
    assert json.loads(path.read_text(encoding="utf-8")) == {"v": "é"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"], "no temporary file is left"

    folder = tmp_path / "model"
    with atomic_folder(folder) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(folder) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError
    assert (folder / "a").read_text() == "old"
    new = tmp_path / "new"
    new.mkdir()
    (new / "b").write_text("new")
    replace_folder(new, folder)
    assert [p.name for p in folder.iterdir()] == ["b"]
    assert sorted(os.listdir(tmp_path)) == ["model", "summary.json"]
