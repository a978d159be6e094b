"""Faults of the server (a damaged version, a missing photo file, a locked database, a full or
read-only disk) answer 5xx, as JSON in each API's own shape; conditions that pass answer 503 with
``Retry-After``, and ``/readyz`` says what is wrong."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from tests.api.fixtures import (
    LOOPBACK_CLIENT,
    LOOPBACK_URL,
    faceforge_command,
    faceforge_environment,
    free_port,
    photo_fields,
    service_settings,
    wait_for,
    wait_until_trained,
)
from tests.conftest import LFW10

RECOGNITION = "/api/v1/recognition"


def _faulty_client(app_settings: Settings, *, embedded_worker: bool = True) -> TestClient:
    """A loopback client that shows the answer to an unhandled error instead of raising it."""
    app = create_app(app_settings, embedded_worker=embedded_worker)
    return TestClient(app, client=LOOPBACK_CLIENT, base_url=LOOPBACK_URL, raise_server_exceptions=False)


def _in_each_shape(answers: dict[str, Any], status: int) -> None:
    """``answers`` keyed by dialect: faceforge, compreface, deepstack."""
    for dialect, answer in answers.items():
        assert answer.status_code == status, (dialect, answer.text)
        body = answer.json()
        if dialect == "faceforge":
            assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"], body
        elif dialect == "compreface":
            assert set(body) == {"message", "code"} and isinstance(body["code"], int), body
        else:
            assert body["success"] is False and body["error"], body


def test_faults_of_ours_are_json_5xx_in_each_shape(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    photos = image_files(LFW10 / "Colin_Powell")
    with _faulty_client(service_settings(tmp_path, database_url, settings)) as client:
        client.post("/api/v1/people", data={"name": "Colin Powell"}, files=photo_fields(photos[:3]))
        # /metrics during a training (the trainer's heartbeat is set): it used to fail on every scrape.
        seen_running = False
        deadline = time.monotonic() + 120  # a training that never ends fails, not hangs the suite
        while client.get("/api/v1/training").json()["state"] != "idle":
            assert time.monotonic() < deadline, "the training did not end"
            running = client.get("/api/v1/training").json()["state"] == "running"
            metrics = client.get("/metrics")
            assert metrics.status_code == 200, metrics.text
            seen_running = seen_running or running
        assert seen_running, "the training ended before /metrics could be read during it"
        wait_until_trained(client)
        services = client.app.state.services  # type: ignore[attr-defined]

        # A stored photo's file is gone (someone cleaned the disk): our fault, not the client's.
        photo = client.get("/api/v1/people/1/photos").json()[0]
        for stored in (services.settings.files_dir / "photos").iterdir():
            stored.unlink()
        image_id = f"00000000-0000-4000-8000-{photo['id']:012x}"
        _in_each_shape(
            {
                "faceforge": client.get(f"/api/v1/people/1/photos/{photo['id']}/file"),
                "compreface": client.get(f"{RECOGNITION}/faces/{image_id}/img"),
            },
            500,
        )
        assert client.get("/api/v1/people/1/thumbnail").status_code in (404, 500)

        # The current version's manifest is damaged on disk: every recognition is a 5xx, not a 400.
        services.models._heads.clear()  # a process that has not loaded it yet
        (services.settings.models_dir / "1" / "manifest.json").write_bytes(b"{damaged")
        probe = photos[5].read_bytes()
        _in_each_shape(
            {
                "faceforge": client.post("/api/v1/identify", files={"photo": ("a.jpg", probe)}),
                "compreface": client.post(f"{RECOGNITION}/recognize", files={"file": ("a.jpg", probe)}),
                "deepstack": client.post("/v1/vision/face/recognize", files={"image": ("a.jpg", probe)}),
            },
            500,
        )


def test_a_locked_database_answers_503_with_retry_after(tmp_path: Path, settings: Settings) -> None:
    database = tmp_path / "faceforge.db"
    app_settings = service_settings(tmp_path, f"sqlite:///{database}", settings)
    # No trainer in this process: it would meet the shortened lock wait below too.
    with _faulty_client(app_settings, embedded_worker=False) as client:
        engine = client.app.state.services.engine  # type: ignore[attr-defined]

        @event.listens_for(engine, "connect")
        def _wait_less(connection: Any, _record: Any) -> None:
            connection.execute("PRAGMA busy_timeout=200")  # 30 s in production; the answer is the same

        engine.dispose()
        # Someone to delete: reads do not wait for the writer, so a delete of nobody is a plain 404.
        assert client.post("/api/v1/people", data={"name": "Bob"}).status_code == 201
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process writes, and keeps on writing
        try:
            answers = {
                "faceforge": client.post("/api/v1/people", data={"name": "Ann"}),
                "compreface": client.post(f"{RECOGNITION}/subjects", json={"subject": "Ann"}),
                "deepstack": client.post("/v1/vision/face/delete", data={"userid": "Bob"}),
            }
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        _in_each_shape(answers, 503)
        assert answers["faceforge"].json()["error"]["code"] == "database_locked"
        assert all(int(answer.headers["retry-after"]) >= 1 for answer in answers.values())
        assert client.post("/api/v1/people", data={"name": "Ann"}).status_code == 201


@contextmanager
def _server_on_small_disk(home: Path, database: Path, shared: Settings) -> Iterator[tuple[str, int]]:
    """``faceforge serve`` whose home is a 4 MB tmpfs of its own mount namespace; yields its URL and
    pid (``/proc/<pid>/root`` reaches that file system from outside)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to give the server a small file system of its own")
    home.mkdir()
    port = free_port()
    serve = " ".join(faceforge_command("serve", "--host", "127.0.0.1", "--port", str(port)))
    mount = f"mount -t tmpfs -o size=4m tmpfs {home}"
    process = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{mount} && exec {serve}"],
        # The database lies outside: the home can then be remounted read-only (nothing open to write).
        env=faceforge_environment(
            home, shared, FACEFORGE_DATABASE_URL=f"sqlite:///{database}", FACEFORGE_WORKER__EMBEDDED="false"
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return process.poll() is not None  # ends the wait; the assertion below says why

    try:
        wait_for(up, what="faceforge serve to start")
        assert process.poll() is None, "faceforge serve on a tmpfs did not start"
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


def test_a_full_or_read_only_disk_is_503_and_not_ready(tmp_path: Path, settings: Settings) -> None:
    home = tmp_path / "home"
    photo = image_files(LFW10 / "Colin_Powell")[0]
    with (
        _server_on_small_disk(home, tmp_path / "faceforge.db", settings) as (url, pid),
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        assert http.get("/readyz").json()["storage"] == "ok"
        inside = Path(f"/proc/{pid}/root{home}")
        filler = _fill(inside)
        not_ready = http.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["storage"] == "full", not_ready.text
        refused = http.post("/api/v1/people", data={"name": "Colin"}, files=photo_fields([photo]))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "storage_full" and int(refused.headers["retry-after"]) >= 1
        compat = http.post(
            f"{RECOGNITION}/faces", params={"subject": "Colin"}, files={"file": ("a.jpg", photo.read_bytes())}
        )
        assert compat.status_code == 503 and set(compat.json()) == {"message", "code"}, compat.text

        filler.unlink()
        assert http.get("/readyz").status_code == 200
        stored = http.post("/api/v1/people", data={"name": "Colin"}, files=photo_fields([photo]))
        assert stored.status_code == 201, stored.text

        remount = ["nsenter", "-t", str(pid), "-m", "mount", "-o", "remount,ro", str(home)]
        subprocess.run(remount, check=True)
        read_only = http.get("/readyz")
        assert read_only.status_code == 503 and read_only.json()["storage"].startswith("unwritable")
        assert http.get("/api/v1/people").json()["total"] == 1  # reading still works
