"""Service fixtures: a fresh home and database per test, on SQLite and on the machine's PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from faceforge.api.app import create_app
from faceforge.config import LimitSettings, Settings, WorkerSettings
from faceforge.export.version_exports import VersionExporter

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite in the test's folder, or a schema of its own in PostgreSQL's ``test`` database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'faceforge.db'}"
        return
    schema = f"faceforge_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def service_settings(tmp_path: Path, database_url: str, shared: Settings, **changes: Any) -> Settings:
    base = Settings(
        home=tmp_path / "home",
        weights_cache=shared.weights_dir,
        database_url=database_url,
        worker=WorkerSettings(poll_seconds=0.1, heartbeat_seconds=0.3, stale_after_seconds=3.0),
        limits=LimitSettings(),
    )
    return base.model_copy(update=changes)


@pytest.fixture(scope="session")
def device_backbones(settings: Settings) -> Settings:
    """Convert the on-device backbones once per session (tens of seconds) before any worker needs them,
    so the first training of the session does not run into the waits below."""
    VersionExporter(settings.weights_dir).prepare()
    return settings


@pytest.fixture
def api_settings(tmp_path: Path, database_url: str, settings: Settings) -> Settings:
    return service_settings(tmp_path, database_url, settings)


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as test_client:
        yield test_client


def wait_for(condition: Callable[[], Any], *, timeout: float = 120.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_until_trained(client: TestClient) -> dict[str, Any]:
    """Wait until every requested training is built; returns the training status."""

    def done() -> dict[str, Any] | None:
        status: dict[str, Any] = client.get("/api/v1/training").json()
        return status if status["state"] == "idle" and status["built"] == status["requested"] else None

    result: dict[str, Any] = wait_for(done, what="training to finish")
    return result


def photo_fields(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("photos", (path.name, path.read_bytes(), "image/jpeg")) for path in paths]
