"""Training coalesces, runs one at a time, survives a killed worker; and a real `faceforge serve` works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from faceforge.building.worker.trainer import PREPARING_STAGE, TrainingWorker
from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from faceforge.storage import training_store
from faceforge.storage.engine import make_engine, make_sessionmaker, upgrade_database
from tests.api.fixtures import (
    BOTH_DATABASES,
    free_port,
    local_client,
    photo_fields,
    service_settings,
    wait_for,
)
from tests.conftest import FACES, LFW10


def _thirty_photos() -> list[Path]:
    photos = [p for folder in ("dlib_johns", "krasserm_lfw10") for p in image_files(FACES / folder)]
    return photos[::3][:30]


def _standby_app(tmp_path: Path, database_url: str, settings: Settings) -> tuple[Settings, TrainingWorker]:
    """Settings for an app without its own worker, and a worker the test drives step by step."""
    app_settings = service_settings(
        tmp_path,
        database_url,
        settings,
        worker=WorkerSettings(embedded=False, poll_seconds=0.1, formats="onnx"),
    )
    engine = make_engine(app_settings.resolved_database_url)
    upgrade_database(engine)
    return app_settings, TrainingWorker(app_settings, make_sessionmaker(engine))


@BOTH_DATABASES
def test_thirty_parallel_registrations_coalesce_into_one_training(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    photos = _thirty_photos()
    app_settings, worker = _standby_app(tmp_path, database_url, settings)
    with local_client(create_app(app_settings)) as client:

        def register(index: int) -> dict[str, Any]:
            response = client.post(
                "/api/v1/people", data={"name": f"person {index}"}, files=photo_fields([photos[index]])
            )
            assert response.status_code in (201, 422), response.text  # 422: the one photo was refused
            return dict(response.json())

        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(register, range(30)))
        created = {answer["id"] for answer in answers if "id" in answer}
        assert len(created) >= 28 and client.get("/api/v1/people").json()["total"] == len(created)
        status = client.get("/api/v1/training").json()
        assert status["state"] == "queued" and status["requested"] == len(created)

        # One training covers every request made before it was claimed.
        assert worker.run_once()
        assert not worker.run_once()
        versions = client.get("/api/v1/models").json()["items"]
        assert [v["version"] for v in versions] == [1] and versions[0]["status"] == "ready"
        final = client.get("/api/v1/models/current").json()
        assert {p["id"] for p in final["people"]} == created
        assert client.get("/api/v1/training").json()["built"] == len(created)
    worker.lease.release()


@BOTH_DATABASES
def test_one_trainer_at_a_time_and_a_dead_ones_work_is_taken_over_at_once(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    app_settings, first = _standby_app(tmp_path, database_url, settings)
    engine = make_engine(app_settings.resolved_database_url)
    with local_client(create_app(app_settings)) as client:
        client.post(
            "/api/v1/people",
            data={"name": "Putin"},
            files=photo_fields(image_files(LFW10 / "Vladimir_Putin")[:4]),
        )
        assert first.run_once()
        assert client.get("/api/v1/models/current").json()["version"] == 1
        client.post(
            "/api/v1/people",
            data={"name": "Bush"},
            files=photo_fields(image_files(LFW10 / "George_W_Bush")[:4]),
        )
        second = TrainingWorker(app_settings, make_sessionmaker(engine))
        assert not second.run_once()  # the first worker is alive and holds the lease
        first.lease.release()  # it stops

        env = {
            **os.environ,
            "FACEFORGE_DATABASE_URL": database_url,
            "FACEFORGE_WEIGHTS_CACHE": str(settings.weights_dir),
            "FACEFORGE_WORKER__FORMATS": "onnx",
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
            assert not second.run_once()  # the subprocess holds the lease now
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert client.get("/api/v1/models/2").json()["status"] == "building"
        assert (app_settings.models_dir / "2").is_dir()  # written, never published
        assert client.get("/api/v1/models/current").json()["version"] == 1

        # What a process killed mid-registration leaves: a finished file without a row, a .tmp file.
        photos_dir = app_settings.files_dir / "photos"
        strangers_dir = app_settings.files_dir / "strangers"
        strangers_dir.mkdir()
        orphans = [
            photos_dir / "0123456789abcdef.jpg",
            photos_dir / ".0123.jpg.abc.tmp",
            strangers_dir / "0123456789abcdef.jpg",  # a stranger's photo whose row was never committed
        ]
        recent = photos_dir / "fedcba9876543210.jpg"  # perhaps a registration in flight: kept
        for path in [*orphans, recent]:
            path.write_bytes(b"\xff\xd8 partial")
        hour_ago = time.time() - 3600
        for path in orphans:
            os.utime(path, (hour_ago, hour_ago))
        kept = sorted(p.name for p in photos_dir.iterdir() if p not in orphans)

        # No waiting for the dead worker's heartbeat to go stale: the lease says it is gone.
        assert second.run_once()
        failed = client.get("/api/v1/models/2").json()
        assert failed["status"] == "failed" and "stopped responding" in failed["status_message"]
        assert not (app_settings.models_dir / "2").exists()
        assert sorted(p.name for p in photos_dir.iterdir()) == kept
        assert list(strangers_dir.iterdir()) == []
        current = client.get("/api/v1/models/current").json()
        assert current["version"] == 3 and sorted(p["name"] for p in current["people"]) == ["Bush", "Putin"]
    second.lease.release()
    engine.dispose()


def test_real_serve_process(tmp_path: Path, settings: Settings) -> None:
    """`faceforge -v serve` with its defaults (every format, embedded worker): a version is built and
    recognises; the log is one line per stage. (That a first start reports its backbone conversion
    is tests/worker/test_preparation.py's: the backbones are converted before this runs.)"""
    port = free_port()
    env = {
        **os.environ,
        "FACEFORGE_WEIGHTS_CACHE": str(settings.weights_dir),
        "FACEFORGE_WORKER__POLL_SECONDS": "0.1",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "faceforge.cli.main",
                "-v",
                "serve",
                "--port",
                str(port),
                "--home",
                str(tmp_path / "home"),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as http:

            def status() -> dict[str, Any] | None:
                try:
                    body: dict[str, Any] = http.get("/api/v1/training").json()
                except httpx.TransportError:
                    return None
                return body

            wait_for(status, what="faceforge serve to start")
            photos = image_files(LFW10 / "Colin_Powell")
            created = http.post("/api/v1/people", data={"name": "Colin"}, files=photo_fields(photos[:5]))
            assert created.status_code == 201
            wait_for(lambda: (status() or {}).get("current_version") == 1, timeout=300, what="version 1")
            found = http.post("/api/v1/identify", files={"photo": ("a.jpg", photos[7].read_bytes())}).json()
            assert found["faces"][0]["match"]["name"] == "Colin"
            assert (tmp_path / "home" / "faceforge.db").exists()
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = [  # uvicorn's access log aside
        line
        for line in log_path.read_text(errors="replace").splitlines()
        if '" 200 OK' not in line and '" 201 Created' not in line
    ]
    assert any("version 1 ready" in line for line in lines), lines
    noise = [line for line in lines if "%|" in line or "it/s]" in line or "Warning" in line or "\r" in line]
    assert noise == [], noise[:5]  # no progress bars or third-party warnings
    assert len(lines) <= 40, "\n".join(lines)


def test_work_before_any_training_is_reported_with_its_stage(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    """A worker converting backbones (before it can train) shows up in the status as a stage with
    progress, and leaves it when done."""
    app_settings, worker = _standby_app(tmp_path, database_url, settings)
    engine = make_engine(app_settings.resolved_database_url)
    sessions = make_sessionmaker(engine)
    with local_client(create_app(app_settings)) as client:
        assert client.get("/api/v1/training").json()["stage"] is None
        with sessions.begin() as session:
            training_store.report_preparation(session, worker_id="w", stage=PREPARING_STAGE, progress=0.5)
        status = client.get("/api/v1/training").json()
        assert (status["state"], status["stage"], status["progress"]) == ("idle", PREPARING_STAGE, 0.5)
        with sessions.begin() as session:
            training_store.report_preparation(session, worker_id="w", stage=None, progress=1.0)
        status = client.get("/api/v1/training").json()
        assert (status["stage"], status["progress"]) == (None, 0.0)
    engine.dispose()
    worker.lease.release()


@BOTH_DATABASES
def test_a_queued_request_says_whether_a_worker_runs(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    """Under `serve --workers N` the API processes train nothing: a request stayed "queued" with
    nothing saying that no `faceforge worker` was running. The trainer's lease tells, however the
    worker ended (the lock goes with its process or session)."""
    app_settings, worker = _standby_app(tmp_path, database_url, settings)
    with local_client(create_app(app_settings)) as client:
        idle = client.get("/api/v1/training").json()
        assert idle["state"] == "idle" and idle["trainer_running"] is None and idle["message"] is None
        photos = photo_fields(image_files(LFW10 / "Vladimir_Putin")[:2])
        assert client.post("/api/v1/people", data={"name": "Putin"}, files=photos).status_code == 201
        waiting = client.get("/api/v1/training").json()
        assert waiting["state"] == "queued" and waiting["trainer_running"] is False, waiting
        assert "start one with the command faceforge worker" in waiting["message"]
        assert worker.lease.try_acquire()  # a worker starts
        try:
            seen = client.get("/api/v1/training").json()
            assert seen["state"] == "queued" and seen["trainer_running"] is True and seen["message"] is None
            assert worker.lease.verify()  # looking did not take the lease from it
        finally:
            worker.lease.release()
        assert client.get("/api/v1/training").json()["trainer_running"] is False  # it stopped
