"""A migrated database for the stores' own tests (SQLite unless a test asks for PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from faceforge.storage.engine import make_engine, upgrade_database


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade_database(engine)
    yield engine
    engine.dispose()
