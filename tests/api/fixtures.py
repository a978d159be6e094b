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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from faceforge.building.export.version_exports import VersionExporter
from faceforge.core.config import LimitSettings, Settings, WorkerSettings
from faceforge.serving.api.app import create_app

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# TestClient's default client host is "testclient" and its Host "testserver"; without API keys
# faceforge serves loopback clients that name a loopback host only.
LOOPBACK_CLIENT = ("127.0.0.1", 50000)
LOOPBACK_URL = "http://127.0.0.1:8000"
BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


def local_client(app: FastAPI) -> TestClient:
    return TestClient(app, client=LOOPBACK_CLIENT, base_url=LOOPBACK_URL)


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
        **{
            "poll_seconds": 0.1,
            "heartbeat_seconds": 0.3,
            "quiet_seconds": 0.0,
            "formats": ON_DEVICE_FORMATS,
            **changes,
        }
    )


def service_settings(tmp_path: Path, database_url: str, shared: Settings, **changes: Any) -> Settings:
    fields: dict[str, Any] = {
        "home": tmp_path / "home",
        "weights_cache": shared.weights_dir,
        "database_url": database_url,
        # Tests wait for each version: no quiet period before claiming (tests/worker/test_bursts.py)
        "worker": WorkerSettings(poll_seconds=0.1, heartbeat_seconds=0.3, quiet_seconds=0.0, formats="onnx"),
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


@pytest.fixture
def quiet_settings(tmp_path: Path, database_url: str, settings: Settings) -> Settings:
    """A home whose process trains nothing (for tests about storage, not versions)."""
    return service_settings(tmp_path, database_url, settings, worker=WorkerSettings(embedded=False))


@pytest.fixture
def quiet_client(quiet_settings: Settings) -> Iterator[TestClient]:
    with local_client(create_app(quiet_settings)) as test_client:
        yield test_client


def wait_for(condition: Callable[[], Any], *, timeout: float = 120.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_until_trained(client: httpx.Client) -> dict[str, Any]:
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


# litert-torch (the converter) and ai_edge_litert (the TFLite runtime, libLiteRt.so)
HEAVY_LIBRARIES = ("torch", "coremltools", "litert", "ai_edge_litert")


@dataclass(frozen=True)
class Served:
    """A running ``faceforge serve``: its URL and, with ``--workers N``, the N processes answering."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    workers: int

    def api_pids(self) -> list[int]:
        if self.workers == 1:
            return [self.process.pid]
        return api_children(self.process.pid)


def api_children(pid: int) -> list[int]:
    """The API processes uvicorn started under ``pid`` (not multiprocessing's resource tracker)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in command:
                children.append(int(child))
    return sorted(children)


def heavy_libraries_loaded(pid: int) -> list[str]:
    """Which of PyTorch, coremltools and litert have files mapped into process ``pid`` (their native
    libraries are mapped the moment they are imported)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in HEAVY_LIBRARIES if f"/{name}" in maps or f"{name}_" in maps]


def faceforge_environment(home: Path, shared: Settings, **env: str) -> dict[str, str]:
    """The environment of a real faceforge process in ``home``: ONNX-only versions, fast polling, the
    session's weights cache, and ``env`` as extra ``FACEFORGE_*`` settings."""
    return {
        **os.environ,
        "FACEFORGE_HOME": str(home),
        "FACEFORGE_WEIGHTS_CACHE": str(shared.weights_dir),
        "FACEFORGE_WORKER__FORMATS": "onnx",
        "FACEFORGE_WORKER__POLL_SECONDS": "0.1",
        "FACEFORGE_WORKER__HEARTBEAT_SECONDS": "0.3",
        "FACEFORGE_WORKER__QUIET_SECONDS": "0",
        **env,
    }


def faceforge_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "faceforge.cli.main", *args]


def on_loopback(command: list[str], port: int) -> list[str]:
    """A ``faceforge serve ...`` command line (e.g. a deployment's) bound to 127.0.0.1:``port``."""
    argv = list(command)
    for option, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    return argv


@contextmanager
def faceforge_server(
    home: Path,
    shared: Settings,
    *,
    command: tuple[str, ...] = ("faceforge", "serve"),
    env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """A real ``faceforge serve`` (``command``, run as given but on a free loopback port), stopped
    afterwards."""
    port = free_port()
    argv = on_loopback(list(command), port)
    assert argv[:2] == ["faceforge", "serve"], argv
    workers = int(argv[argv.index("--workers") + 1]) if "--workers" in argv else 1
    process = subprocess.Popen(
        faceforge_command(*argv[1:]),
        env=faceforge_environment(home, shared, **(env or {})),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    # One client for the whole wait: each new httpx client loads the CA bundle (0.1-0.3 s of CPU,
    # beside the server starting), which polling every 0.1 s did 90 s' worth of per suite run.
    poller = httpx.Client(timeout=5)

    def up() -> bool:
        try:
            return poller.get(f"{url}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        with poller:
            wait_for(up, what="faceforge serve to start")
        yield Served(url, port, process, workers)
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def serve_process(home: Path, shared: Settings, **env: str) -> Iterator[tuple[str, int]]:
    """One ``faceforge serve`` process (``faceforge_server``); yields its URL and port."""
    with faceforge_server(home, shared, env=env) as served:
        yield served.url, served.port
