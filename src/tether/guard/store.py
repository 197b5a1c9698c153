"""The guard's store: every interaction with its verdicts, latency and key, and the API keys (hashed).

SQLAlchemy Core on SQLite by default (WAL journal, ``synchronous=FULL``: a committed row survives a killed
process and a power cut) or PostgreSQL by URL (``postgresql+psycopg://user@host/db``), so several workers
and hosts share one database. The schema is created and upgraded by Alembic migrations
(:mod:`tether.guard.migrations`); :func:`open_store` runs them. A request is acknowledged only after its
row is committed, so nothing acknowledged is lost.

What is written has been masked by the pipeline's rails and, when ``redact`` is on (the default), by a
redactor of its own (PII and secrets) before it reaches the database.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tether.errors import ConfigError

metadata = sa.MetaData()

interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("key_id", sa.String(36), index=True),
    sa.Column("endpoint", sa.String(32), nullable=False),
    sa.Column("model", sa.String(200)),
    # The request's messages as JSON, masked.
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("response", sa.Text),
    # ``ok``, ``blocked_input``, ``blocked_output``, ``upstream_error``, ``checked``.
    sa.Column("outcome", sa.String(32), nullable=False, index=True),
    sa.Column("flagged", sa.Boolean, nullable=False, index=True),
    # The answer was a refusal (by an output rail that judges refusals), for the over-refusal monitor.
    sa.Column("refused", sa.Boolean),
    # Every rail's verdict, score and reason on both sides, as JSON.
    sa.Column("verdicts", sa.Text, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("guard_ms", sa.Float, nullable=False),
    sa.Column("upstream_ms", sa.Float),
    # ``fine``, ``harmful``, ``over_refusal`` (set by a reviewer).
    sa.Column("review_label", sa.String(32), index=True),
    # A reviewer's corrected response.
    sa.Column("review_response", sa.Text),
    sa.Column("review_note", sa.Text),
    sa.Column("reviewed_by", sa.String(36)),
    sa.Column("reviewed_at", sa.Float),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    # SHA-256 of the key: keys are 256 random bits, so a fast hash is safe (as for GitHub's tokens).
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    # The first characters of the key, to recognise it in listings.
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("admin", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)

KEY_PREFIX = "tg-"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    admin: bool
    created_at: float
    revoked_at: float | None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def engine_for(url: str) -> sa.Engine:
    """An engine for ``url``; a SQLite file's folder is created."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as err:
        raise ConfigError(f"database: {url!r} is not a database URL ({err})") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)


def migrate(url: str) -> None:
    """Create or upgrade the schema to the newest migration (Alembic ``upgrade head``)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    config.attributes["url"] = url
    command.upgrade(config, "head")


class Store:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # --- keys -----------------------------------------------------------------------------------------

    def create_key(self, name: str, *, admin: bool = False) -> tuple[str, ApiKey]:
        """A new key (shown once: only its hash is stored) and its record."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        return key, self.add_key(key, name=name, admin=admin)

    def add_key(self, key: str, *, name: str, admin: bool = False) -> ApiKey:
        """Store a key the caller made (its hash); keys shorter than 24 characters are refused."""
        if len(key) < 24:
            raise ConfigError("an API key needs at least 24 characters (use `tether guard keys create`)")
        record = ApiKey(str(uuid.uuid4()), name, key[:10], admin, time.time(), None)
        with self.engine.begin() as db:
            db.execute(
                api_keys.insert().values(
                    id=record.id,
                    name=name,
                    key_hash=hash_key(key),
                    prefix=record.prefix,
                    admin=admin,
                    created_at=record.created_at,
                )
            )
        return record

    def verify_key(self, key: str) -> ApiKey | None:
        """The key's record when it exists and is not revoked."""
        with self.engine.connect() as db:
            row = db.execute(sa.select(api_keys).where(api_keys.c.key_hash == hash_key(key))).mappings().first()
        if row is None or row["revoked_at"] is not None:
            return None
        return ApiKey(row["id"], row["name"], row["prefix"], bool(row["admin"]), row["created_at"], None)

    def list_keys(self) -> list[ApiKey]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).mappings().all()
        return [
            ApiKey(r["id"], r["name"], r["prefix"], bool(r["admin"]), r["created_at"], r["revoked_at"]) for r in rows
        ]

    def revoke_key(self, key_id_or_prefix: str) -> int:
        with self.engine.begin() as db:
            result = db.execute(
                api_keys.update()
                .where(sa.or_(api_keys.c.id == key_id_or_prefix, api_keys.c.prefix == key_id_or_prefix))
                .where(api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return int(result.rowcount)

    # --- interactions ---------------------------------------------------------------------------------

    def record(self, row: dict[str, Any]) -> str:
        """Insert one interaction (committed before this returns) and give its id."""
        values = dict(row)
        values.setdefault("id", str(uuid.uuid4()))
        values.setdefault("created_at", time.time())
        for name in ("request", "verdicts"):
            if not isinstance(values.get(name), str):
                values[name] = json.dumps(values.get(name), ensure_ascii=False)
        with self.engine.begin() as db:
            db.execute(interactions.insert().values(**values))
        return str(values["id"])

    def get(self, interaction_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(interactions).where(interactions.c.id == interaction_id)).mappings().first()
        return dict(row) if row else None

    def query(
        self,
        *,
        flagged: bool | None = None,
        outcome: str | None = None,
        reviewed: bool | None = None,
        key_id: str | None = None,
        since: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Interactions, newest first, filtered."""
        q = sa.select(interactions).order_by(interactions.c.created_at.desc()).limit(limit).offset(offset)
        if flagged is not None:
            q = q.where(interactions.c.flagged == flagged)
        if outcome is not None:
            q = q.where(interactions.c.outcome == outcome)
        if reviewed is not None:
            q = q.where(interactions.c.review_label.is_not(None) if reviewed else interactions.c.review_label.is_(None))
        if key_id is not None:
            q = q.where(interactions.c.key_id == key_id)
        if since is not None:
            q = q.where(interactions.c.created_at >= since)
        with self.engine.connect() as db:
            return [dict(r) for r in db.execute(q).mappings().all()]

    def count(self) -> int:
        with self.engine.connect() as db:
            return int(db.execute(sa.select(sa.func.count()).select_from(interactions)).scalar_one())

    def ids(self) -> set[str]:
        with self.engine.connect() as db:
            return {r[0] for r in db.execute(sa.select(interactions.c.id))}

    def review(
        self, interaction_id: str, *, label: str, reviewer: str, response: str | None = None, note: str | None = None
    ) -> bool:
        with self.engine.begin() as db:
            result = db.execute(
                interactions.update()
                .where(interactions.c.id == interaction_id)
                .values(
                    review_label=label,
                    review_response=response,
                    review_note=note,
                    reviewed_by=reviewer,
                    reviewed_at=time.time(),
                )
            )
        return bool(result.rowcount)

    def reviewed(self) -> Iterator[dict[str, Any]]:
        with self.engine.connect() as db:
            q = (
                sa.select(interactions)
                .where(interactions.c.review_label.is_not(None))
                .order_by(interactions.c.created_at)
            )
            for row in db.execute(q).mappings():
                yield dict(row)

    def purge(self, older_than_days: float) -> int:
        """Delete interactions older than the retention period; the number deleted."""
        cutoff = time.time() - older_than_days * 86400
        with self.engine.begin() as db:
            return int(db.execute(interactions.delete().where(interactions.c.created_at < cutoff)).rowcount)

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str, *, migrate_schema: bool = True) -> Store:
    """The store at ``url``, its schema migrated to the newest version first (unless told not to)."""
    if migrate_schema:
        migrate(url)
    return Store(engine_for(url))


def dumps_rows(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(rows, ensure_ascii=False, default=str)
