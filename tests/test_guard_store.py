"""The guard's store on SQLite and on a real PostgreSQL server (`.ci/postgres.sh` starts one in CI; without
TETHER_TEST_POSTGRES_URL the PostgreSQL cases skip and say why)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from tether.errors import ConfigError
from tether.guard.store import engine_for, open_store

POSTGRES = os.environ.get("TETHER_TEST_POSTGRES_URL")


def _reset_postgres(url: str) -> None:
    engine = engine_for(url)
    with engine.begin() as db:
        db.execute(sa.text("DROP TABLE IF EXISTS interactions, api_keys, alembic_version CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sub' / 'guard.db'}"
    if not POSTGRES:
        pytest.skip("no PostgreSQL server: set TETHER_TEST_POSTGRES_URL (source .ci/postgres.sh starts one)")
    _reset_postgres(POSTGRES)
    return POSTGRES


def row(**extra) -> dict:
    return {
        "endpoint": "chat",
        "request": [{"role": "user", "content": "hi"}],
        "outcome": "ok",
        "flagged": False,
        "verdicts": [],
        "latency_ms": 2.0,
        "guard_ms": 1.0,
        **extra,
    }


def test_keys_are_hashed_verified_and_revoked(url: str) -> None:
    store = open_store(url)
    key, record = store.create_key("app")
    admin, _ = store.create_key("ops", admin=True)
    assert store.verify_key(key).id == record.id and store.verify_key(admin).admin
    assert store.verify_key(key + "x") is None
    with store.engine.connect() as db:
        hashes = [r[0] for r in db.execute(sa.text("SELECT key_hash FROM api_keys"))]
    assert key not in hashes and len(hashes[0]) == 64
    assert store.revoke_key(record.prefix) == 1 and store.verify_key(key) is None
    assert [k.revoked_at is not None for k in store.list_keys()] == [True, False]
    with pytest.raises(ConfigError, match="24 characters"):
        store.add_key("short", name="x")


def test_interactions_are_recorded_queried_reviewed_and_purged(url: str) -> None:
    store = open_store(url)
    old = store.record(row(created_at=time.time() - 40 * 86400))
    flagged = store.record(row(flagged=True, outcome="blocked_input", key_id="k1"))
    store.record(row())
    assert store.count() == 3
    assert [r["id"] for r in store.query(flagged=True)] == [flagged]
    assert [r["id"] for r in store.query(outcome="blocked_input", key_id="k1")] == [flagged]
    assert store.review(flagged, label="harmful", reviewer="me", note="yes")
    assert [r["id"] for r in store.query(reviewed=True)] == [flagged]
    assert [r["review_label"] for r in store.reviewed()] == ["harmful"]
    assert not store.review("missing", label="fine", reviewer="me")
    assert store.purge(30) == 1 and old not in store.ids() and store.count() == 2


def test_migrations_run_twice_and_writers_run_concurrently(url: str) -> None:
    open_store(url).close()
    store = open_store(url)  # already at head: nothing to do, nothing lost

    def write(i: int) -> str:
        return store.record(row(key_id=f"k{i % 4}"))

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(write, range(200)))
    assert store.ids() == ids and store.count() == 200


def test_a_bad_database_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        engine_for("not a url")
