"""Races between transactions on the machine's real PostgreSQL: which backend waits for whose lock."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

POSTGRESQL_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def blocked_by(session: Session, engine: Engine) -> bool:
    """Whether another backend waits for a lock ``session``'s transaction holds."""
    holder = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with engine.connect() as connection:
        waiting = connection.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))"),
            {"holder": holder},
        ).scalar_one()
    return bool(waiting)
