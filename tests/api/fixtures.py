"""Service fixtures: a fresh home and database per test.

SQLite by default; tests whose behaviour differs on PostgreSQL (queue, locking, concurrency) ask for
both with ``@BOTH_DATABASES``. Versions are built as ONNX only unless a test asks for the on-device
formats (each full version writes ~340 MB)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from faceforge.api.app import create_app
from faceforge.config import LimitSettings, Settings, WorkerSettings
from faceforge.export.version_exports import VersionExporter

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# TestClient's default client host is "testclient"; without API keys faceforge serves loopback only.
LOOPBACK_CLIENT = ("127.0.0.1", 50000)
BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


def local_client(app: FastAPI) -> TestClient:
    return TestClient(app, client=LOOPBACK_CLIENT)


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite in the test's folder, or a schema of its own in PostgreSQL's ``test`` database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'faceforge.db'}"
        return
    schema = f"faceforge_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        admin.dispose()
        pytest.skip(f"no PostgreSQL server answers at 127.0.0.1:5432 ({type(error.orig).__name__})")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


ON_DEVICE_FORMATS = "onnx,coreml,tflite"


def device_worker(**changes: Any) -> WorkerSettings:
    """Worker settings for tests that check the on-device files (Core ML, TFLite)."""
    return WorkerSettings(
        **{"poll_seconds": 0.1, "heartbeat_seconds": 0.3, "formats": ON_DEVICE_FORMATS, **changes}
    )


def service_settings(tmp_path: Path, database_url: str, shared: Settings, **changes: Any) -> Settings:
    fields: dict[str, Any] = {
        "home": tmp_path / "home",
        "weights_cache": shared.weights_dir,
        "database_url": database_url,
        "worker": WorkerSettings(poll_seconds=0.1, heartbeat_seconds=0.3, formats="onnx"),
        "limits": LimitSettings(),
    }
    return Settings(**{**fields, **changes})  # validated, as settings from the environment are


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
    with local_client(create_app(api_settings)) as test_client:
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_process(home: Path, shared: Settings, **env: str) -> Iterator[tuple[str, int]]:
    """A real ``faceforge serve`` on a free loopback port (ONNX-only versions, a fast-polling worker,
    the session's weights cache), with ``env`` as extra ``FACEFORGE_*`` settings; yields its URL and
    port once it answers, and stops it afterwards."""
    port = free_port()
    environment = {
        **os.environ,
        "FACEFORGE_WEIGHTS_CACHE": str(shared.weights_dir),
        "FACEFORGE_WORKER__FORMATS": "onnx",
        "FACEFORGE_WORKER__POLL_SECONDS": "0.1",
        **env,
    }
    command = [sys.executable, "-m", "faceforge.cli.main", "serve", "--port", str(port), "--home", str(home)]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/api/v1/access", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, what="faceforge serve to start")
        yield url, port
    finally:
        process.terminate()
        process.wait(timeout=30)
