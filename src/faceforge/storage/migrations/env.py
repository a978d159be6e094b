"""Alembic environment: migrations run on the connection faceforge hands over at start-up."""

from __future__ import annotations

from alembic import context

from faceforge.storage.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "faceforge runs migrations itself at start-up (faceforge.storage.engine.upgrade_database)"
    )
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
