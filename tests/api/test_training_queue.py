"""Training coalesces, runs one at a time, survives a killed worker; and a real `faceforge serve` works."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from faceforge.api.app import create_app
from faceforge.config import Settings, WorkerSettings
from faceforge.db.engine import make_engine, make_sessionmaker
from faceforge.evaluation.dataset import image_files
from faceforge.worker.trainer import TrainingWorker
from tests.api.fixtures import photo_fields, service_settings, wait_for, wait_until_trained
from tests.conftest import FACES, LFW10


def _thirty_photos() -> list[Path]:
    photos = [p for folder in ("dlib_johns", "krasserm_lfw10") for p in image_files(FACES / folder)]
    return photos[::3][:30]


def test_thirty_parallel_registrations(client: TestClient) -> None:
    photos = _thirty_photos()

    def register(index: int) -> int:
        response = client.post(
            "/api/v1/people", data={"name": f"person {index}"}, files=photo_fields([photos[index]])
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = list(pool.map(register, range(30)))
    assert len(set(ids)) == 30
    assert client.get("/api/v1/people").json()["total"] == 30
    wait_until_trained(client)
    versions = sorted(client.get("/api/v1/models").json()["items"], key=lambda v: v["version"])
    assert all(v["status"] in {"ready", "pruned"} for v in versions)  # older ones pruned by retention
    assert versions[-1]["status"] == "ready"
    assert len(versions) < 30  # requests made while a training ran were coalesced
    for earlier, later in pairwise(versions):
        assert earlier["finished_at"] <= later["created_at"], "two trainings overlapped"
    final = client.get("/api/v1/models/current").json()
    accepted = {
        p["id"]
        for p in client.get("/api/v1/people", params={"limit": 100}).json()["items"]
        if p["photo_count"]
    }
    assert {p["id"] for p in final["people"]} == accepted and len(accepted) >= 28


def test_killed_worker_leaves_previous_version_and_pending_work_is_trained(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    app_settings = service_settings(
        tmp_path,
        database_url,
        settings,
        worker=WorkerSettings(
            embedded=False, poll_seconds=0.1, heartbeat_seconds=0.3, stale_after_seconds=2.0
        ),
    )
    engine = make_engine(app_settings.resolved_database_url)
    in_process = TrainingWorker(app_settings, make_sessionmaker(engine))
    with TestClient(create_app(app_settings)) as client:
        client.post(
            "/api/v1/people",
            data={"name": "Putin"},
            files=photo_fields(image_files(LFW10 / "Vladimir_Putin")[:4]),
        )
        assert in_process.run_once()
        assert client.get("/api/v1/models/current").json()["version"] == 1

        client.post(
            "/api/v1/people",
            data={"name": "Bush"},
            files=photo_fields(image_files(LFW10 / "George_W_Bush")[:4]),
        )
        env = {
            **os.environ,
            "FACEFORGE_DATABASE_URL": database_url,
            "FACEFORGE_WEIGHTS_CACHE": str(settings.weights_dir),
            "FACEFORGE_WORKER__PAUSE_BEFORE_PUBLISH_SECONDS": "60",
            "FACEFORGE_WORKER__HEARTBEAT_SECONDS": "0.3",
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "faceforge.cli.main", "worker", "--home", str(app_settings.home)], env=env
        )
        try:
            wait_for(
                lambda: client.get("/api/v1/training").json()["stage"] == "paused", what="worker to pause"
            )
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        status = client.get("/api/v1/training").json()
        assert status["current_version"] == 1
        assert client.get("/api/v1/models/2").json()["status"] == "building"
        assert client.get("/api/v1/models/current").json()["version"] == 1

        time.sleep(2.5)  # the dead worker's heartbeat goes stale
        assert client.get("/api/v1/training").json()["state"] == "queued"
        assert in_process.run_once()
        assert client.get("/api/v1/models/2").json()["status"] == "failed"
        current = client.get("/api/v1/models/current").json()
        assert current["version"] == 3 and sorted(p["name"] for p in current["people"]) == ["Bush", "Putin"]
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_real_serve_process(tmp_path: Path, settings: Settings) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "FACEFORGE_WEIGHTS_CACHE": str(settings.weights_dir),
        "FACEFORGE_WORKER__POLL_SECONDS": "0.1",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faceforge.cli.main",
            "serve",
            "--port",
            str(port),
            "--home",
            str(tmp_path / "home"),
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as http:

            def up() -> bool:
                try:
                    return http.get("/api/v1/training").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(up, what="faceforge serve to start")
            photos = image_files(LFW10 / "Colin_Powell")
            created = http.post("/api/v1/people", data={"name": "Colin"}, files=photo_fields(photos[:5]))
            assert created.status_code == 201
            wait_for(lambda: http.get("/api/v1/training").json()["current_version"] == 1, what="version 1")
            found = http.post("/api/v1/identify", files={"photo": ("a.jpg", photos[7].read_bytes())}).json()
            assert found["faces"][0]["match"]["name"] == "Colin"
            assert (tmp_path / "home" / "faceforge.db").exists()
    finally:
        server.terminate()
        server.wait(timeout=30)
