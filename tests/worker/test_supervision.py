"""The trainer embedded in an API process does not die silently: an error that escapes it is
reported by /readyz and /metrics, and the trainer is started again."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from tests.api.fixtures import local_client, photo_fields, service_settings, wait_for, wait_until_trained
from tests.conftest import LFW10


def _metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"/metrics has no {name}")


def test_a_failing_embedded_trainer_is_reported_and_started_again(tmp_path: Path, settings: Settings) -> None:
    app_settings = service_settings(tmp_path, f"sqlite:///{tmp_path / 'faceforge.db'}", settings)
    # Where the trainer's lease lives is a directory: taking the lease fails, as a database that is
    # down would make it fail on PostgreSQL.
    lease = tmp_path / "faceforge.db.trainer-lease"
    lease.mkdir()
    with local_client(create_app(app_settings)) as client:
        down = wait_for(lambda: client.get("/readyz").status_code == 503, what="the trainer to fail")
        assert down
        body = client.get("/readyz").json()
        assert body["status"] == "not_ready" and body["database"] == "ok"
        assert body["trainer"].startswith("restarting after an error: IsADirectoryError"), body
        assert _metric(client, "faceforge_trainer_restarts_total") >= 1

        lease.rmdir()  # the fault goes away: the next start takes the lease and trains
        registered = client.post(
            "/api/v1/people",
            data={"name": "Colin"},
            files=photo_fields(image_files(LFW10 / "Colin_Powell")[:3]),
        )
        assert registered.status_code == 201, registered.text
        assert wait_until_trained(client)["current_version"] == 1
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["trainer"] == "running"
        assert _metric(client, "faceforge_trainer_up") == 1.0
