"""Alembic environment for the guard's store: the URL comes from the caller (``config.attributes["url"]``)."""

from __future__ import annotations

from alembic import context

from tether.guard.store import engine_for, metadata

url = context.config.attributes["url"]
engine = engine_for(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
