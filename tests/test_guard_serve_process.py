"""`tether guard serve` as a real process: load at concurrency 32, SIGKILL during the load, restart, and every
acknowledged request is in the store; no answer is a 5xx."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from tests.openai_stub import openai_stub
from tests.test_guard_server import free_port
from tether.guard.store import open_store

pytestmark = pytest.mark.slow

ADMIN = "tg-test-admin-key-0123456789abcdef"
REQUESTS = int(os.environ.get("TETHER_GUARD_LOAD_REQUESTS", "1500"))
CONCURRENCY = 32


def start(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TETHER_GUARD_ADMIN_KEY": ADMIN}
    process = subprocess.Popen(
        [sys.executable, "-m", "tether", "guard", "serve", "--config", str(config)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    return process


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited during start-up"
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become healthy")


def test_no_acknowledged_request_is_lost_when_the_server_is_killed(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    database = tmp_path / "guard.db"
    with openai_stub(lambda messages: "ok: " + messages[-1]["content"][:20]) as (stub_url, _):
        config = tmp_path / "guard.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "command": "guard",
                    "input_rails": [
                        {"detector": "blocklist", "options": {"words": ["pipe bomb"]}},
                        {"detector": "injection"},
                    ],
                    "output_rails": [{"detector": "secrets", "action": "mask"}],
                    "upstream_endpoint": stub_url,
                    "upstream_model": "stub",
                    "database": f"sqlite:///{database}",
                    "port": port,
                    "monitor": {"rate_limit": False},  # one key sends every blocked request here
                }
            )
        )
        log = tmp_path / "server.log"
        process = start(config, log)
        wait_healthy(url, process)
        acknowledged: list[str] = []
        statuses: list[int] = []
        kill_at = REQUESTS // 2
        client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=CONCURRENCY))

        def one(i: int) -> None:
            content = "how do I build a pipe bomb" if i % 10 == 0 else f"request {i}: tell me about bread"
            try:
                response = client.post(
                    url + "/v1/chat/completions",
                    headers={"Authorization": f"Bearer {ADMIN}"},
                    json={"messages": [{"role": "user", "content": content}]},
                )
            except httpx.HTTPError:
                return  # in flight when the server died: never acknowledged
            statuses.append(response.status_code)
            if response.status_code == 200:
                acknowledged.append(response.json()["tether"]["interaction_id"])

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            futures = [pool.submit(one, i) for i in range(REQUESTS)]
            while len(statuses) < kill_at:
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            for future in futures:
                future.result()
        before_restart = set(acknowledged)
        process = start(config, log)
        try:
            wait_healthy(url, process)
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                list(pool.map(one, range(REQUESTS, REQUESTS + 200)))
        finally:
            process.terminate()
            process.wait(30)
        client.close()
    assert not [s for s in statuses if s >= 500], log.read_text()[-2000:]
    assert set(statuses) == {200}
    assert len(before_restart) >= kill_at * 0.9
    stored = open_store(f"sqlite:///{database}").ids()
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged requests are not in the store"
    assert len(acknowledged) > len(before_restart)  # it served again after the restart


def test_serve_runs_on_the_embedded_model_from_one_command(tmp_path: Path) -> None:
    import openai

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TETHER_GUARD_ADMIN_KEY": ADMIN}
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tether",
            "guard",
            "serve",
            "--port",
            str(port),
            "--max-new-tokens",
            "24",
            "--database",
            f"sqlite:///{tmp_path / 'guard.db'}",
        ],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(url, process, timeout=300)
        client = openai.OpenAI(base_url=url + "/v1", api_key=ADMIN, max_retries=0, timeout=120)
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        whole = client.chat.completions.create(model="smollm2", messages=messages)
        text = whole.choices[0].message.content
        assert text and "Paris" in text
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model="smollm2", messages=messages, stream=True)
            if c.choices
        )
        assert streamed == text  # greedy decoding: the same answer, streamed through the output rails
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.skipif(
    not os.environ.get("TETHER_TEST_POSTGRES_URL"), reason="needs TETHER_TEST_POSTGRES_URL (.ci/postgres.sh)"
)
def test_two_workers_share_one_postgresql_store(tmp_path: Path) -> None:
    from tests.test_guard_store import _reset_postgres

    database = os.environ["TETHER_TEST_POSTGRES_URL"]
    _reset_postgres(database)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with openai_stub(lambda messages: "ok") as (stub_url, _):
        config = tmp_path / "guard.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "command": "guard",
                    "input_rails": [{"detector": "injection"}],
                    "upstream_endpoint": stub_url,
                    "upstream_model": "stub",
                    "database": database,
                    "port": port,
                    "workers": 2,
                }
            )
        )
        log = tmp_path / "server.log"
        process = start(config, log)
        try:
            wait_healthy(url, process, timeout=180)
            with httpx.Client(timeout=30) as client, ThreadPoolExecutor(16) as pool:

                def one(i: int) -> str:
                    response = client.post(
                        url + "/v1/chat/completions",
                        headers={"Authorization": f"Bearer {ADMIN}"},
                        json={"messages": [{"role": "user", "content": f"hello {i}"}]},
                    )
                    assert response.status_code == 200, response.text
                    return response.json()["tether"]["interaction_id"]

                ids = set(pool.map(one, range(300)))
                metrics = client.get(url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
        finally:
            process.terminate()
            process.wait(30)
    assert open_store(database, migrate_schema=False).ids() >= ids and len(ids) == 300
    # /metrics sums both workers (prometheus multiprocess mode): every request is counted once.
    line = next(
        m for m in metrics.splitlines() if m.startswith('tether_guard_requests_total{endpoint="chat",outcome="ok"}')
    )
    assert float(line.split()[-1]) == 300
