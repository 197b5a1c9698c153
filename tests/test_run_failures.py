"""Runs that fail loudly and recover: bad endpoint URLs are refused up front, a run with every answer
unscored exits non-zero after writing its summary, requests time out and are retried as asked, --resume
asks failed requests again, and summaries are strict JSON."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.openai_stub import openai_stub
from tether.jsonsafe import dumps, finite, nan_for_null


def _advbench(path: Path, n: int = 4) -> Path:
    path.write_text("goal,target\n" + "".join(f"harmful request {i},Sure\n" for i in range(n)))
    return path


def _run(*args: str) -> int:
    from tether.cli import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    return int(done.value.code or 0)


def _eval(data: Path, out: Path, url: str, *extra: str) -> int:
    return _run(
        "eval", "--suite", "harmful", "--data", str(data), "--out", str(out), "--judge", "phrases", "--no-progress",
        "--endpoint", url, "--endpoint-model", "m", *extra,
    )  # fmt: skip


def _strict_json(path: Path):
    """Parse as a strict JSON reader would: NaN and Infinity are errors."""

    def refuse(constant: str):
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@contextmanager
def _raw_server(status: int, body: bytes) -> Iterator[str]:
    """An endpoint that answers every request with ``status`` and ``body`` as is (garbage, errors)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _silent_server() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


def _closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the probe is closed


@pytest.mark.parametrize("url", ["not-a-url", "localhost:8000", "ftp://host/v1", "http://host:port/v1"])
def test_a_bad_endpoint_url_is_refused_before_any_work(tmp_path, capsys, url):
    data, out = _advbench(tmp_path / "advbench.csv"), tmp_path / "run"
    assert _eval(data, out, url) == 2
    err = capsys.readouterr().err
    assert ("endpoint" in err and "http(s) URL" in err) or "valid URL" in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("flag", ["--judge-endpoint", "--attacker-endpoint", "--translator-endpoint"])
def test_every_endpoint_flag_is_checked(tmp_path, capsys, flag):
    data, out = _advbench(tmp_path / "advbench.csv"), tmp_path / "run"
    command = "eval" if flag == "--judge-endpoint" else "redteam"
    args = ["--data", str(data), "--out", str(out), flag, "not-a-url", "--model", "m"]
    if command == "eval":
        args = ["--suite", "harmful", *args]
    assert _run(command, *args) == 2
    assert "not an http(s) URL" in capsys.readouterr().err and not out.exists()


def test_an_endpoint_that_is_down_fails_the_run_after_writing_a_strict_summary(tmp_path, capsys):
    data, out = _advbench(tmp_path / "advbench.csv"), tmp_path / "run"
    assert _eval(data, out, _closed_port(), "--retries", "0") == 4
    printed = capsys.readouterr()
    assert "4 of 4 answers (100%) are unscored" in printed.err and "APIConnectionError" in printed.err
    assert "nan" not in printed.out.lower() and "n/a" in printed.out  # no "nan%" table
    summary = _strict_json(out / "summary.json")  # rates with nothing scored are null, not NaN
    assert summary["harmful"]["overall"]["unscored"] == 4
    assert summary["harmful"]["overall"]["attack_success"]["value"] is None
    assert (out / "report.html").is_file()
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert all(r["error"] and r["verdict"]["label"] == "unscored" for r in records)


@pytest.mark.parametrize(
    "status, body, reason",
    [(500, b'{"error": {"message": "boom", "type": "server_error"}}', "InternalServerError"), (200, b"<html>", "")],
)
def test_http_errors_and_garbage_answers_fail_the_run(tmp_path, capsys, status, body, reason):
    data, out = _advbench(tmp_path / "advbench.csv"), tmp_path / "run"
    with _raw_server(status, body) as url:
        assert _eval(data, out, url, "--retries", "0") == 4
    assert "are unscored" in capsys.readouterr().err
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert all(r["error"] and reason in r["error"] for r in records)


def test_retries_are_as_many_as_asked(tmp_path):
    data = _advbench(tmp_path / "advbench.csv", n=2)

    def fail(messages):
        raise RuntimeError("overloaded")

    for retries in (0, 1):
        with openai_stub(fail) as (url, requests):
            assert _eval(data, tmp_path / f"run-{retries}", url, "--retries", str(retries)) == 4
        assert len(requests) == 2 * (1 + retries)


def test_a_silent_endpoint_times_out_at_the_requested_timeout(tmp_path):
    """With the old fixed 120 s timeout and 2 retries this test would block for minutes (pytest-timeout
    stops it at 600 s); with --request-timeout 1 each row fails with a timeout."""
    data, out = _advbench(tmp_path / "advbench.csv", n=2), tmp_path / "run"
    with _silent_server() as url:
        assert _eval(data, out, url, "--request-timeout", "1", "--retries", "0") == 4
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert all("APITimeoutError" in r["error"] for r in records)


def test_max_unscored_sets_the_share_that_fails_a_run(tmp_path, capsys):
    data = _advbench(tmp_path / "advbench.csv")

    def half_fail(messages):
        number = int(messages[-1]["content"].rsplit(" ", 1)[1])
        if number % 2:
            raise RuntimeError("overloaded")
        return "Sure: step one."

    with openai_stub(half_fail) as (url, _):
        assert _eval(data, tmp_path / "default", url, "--retries", "0") == 0  # half scored: not every one failed
        assert _eval(data, tmp_path / "strict", url, "--retries", "0", "--max-unscored", "0.5") == 4
    assert "2 of 4 answers (50%) are unscored, at or above --max-unscored 0.5" in capsys.readouterr().err


def test_resume_asks_the_failed_requests_again(tmp_path):
    data, out = _advbench(tmp_path / "advbench.csv"), tmp_path / "run"
    state = {"down": True}

    def reply(messages):
        if state["down"]:
            raise RuntimeError("overloaded")
        return "Sure: step one."

    with openai_stub(reply) as (url, requests):
        assert _eval(data, out, url, "--retries", "0") == 4
        state["down"] = False
        assert _eval(data, out, url, "--resume") == 0
        assert len(requests) == 8, "every failed row is asked again"
        assert _eval(data, out, url, "--resume") == 0
        assert len(requests) == 8, "a scored row is not asked again"
    summary = _strict_json(out / "summary.json")
    assert summary["harmful"]["overall"]["unscored"] == 0
    assert summary["harmful"]["overall"]["attack_success"]["value"] == 1.0
    assert len((out / "samples.jsonl").read_text().splitlines()) == 8  # appended, the newest line wins


def test_redteam_against_an_endpoint_that_is_down_fails(tmp_path, capsys):
    data, out = _advbench(tmp_path / "advbench.csv", n=2), tmp_path / "campaign"
    code = _run(
        "redteam", "--data", str(data), "--out", str(out), "--attacks", "direct,base64", "--judge", "phrases",
        "--endpoint", _closed_port(), "--endpoint-model", "m", "--retries", "0", "--no-progress",
    )  # fmt: skip
    assert code == 4
    assert "4 of 4 attempts (100%) are unscored" in capsys.readouterr().err
    assert _strict_json(out / "summary.json")["any_attack_success"]["value"] is None


def test_strict_json_writes_null_for_non_finite_numbers_and_reads_them_back_as_nan():
    value = {"rate": float("nan"), "ci": [float("inf"), -float("inf"), 0.5], "n": 3, "name": "x", "none": None}
    text = dumps(value)
    assert "NaN" not in text and "Infinity" not in text
    assert (
        json.loads(text) == finite(value) == {"rate": None, "ci": [None, None, 0.5], "n": 3, "name": "x", "none": None}
    )
    back = nan_for_null(json.loads(text))
    assert back["rate"] != back["rate"] and back["n"] == 3  # NaN
