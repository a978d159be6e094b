"""Old versions are pruned: the newest N ready versions keep their files, older ones are deleted."""

from __future__ import annotations

from pathlib import Path

from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from tests.api.fixtures import local_client, photo_fields, service_settings, wait_for, wait_until_trained
from tests.conftest import LFW10

PEOPLE = ["Colin_Powell", "Tony_Blair", "Hugo_Chavez", "Ariel_Sharon"]


def test_only_the_newest_versions_keep_their_files(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    # ONNX only, no quiet period: retention is about versions, not formats (four trainings).
    worker = WorkerSettings(
        poll_seconds=0.1, heartbeat_seconds=0.3, quiet_seconds=0.0, formats="onnx", keep_versions=2
    )
    app_settings = service_settings(tmp_path, database_url, settings, worker=worker)
    with local_client(create_app(app_settings)) as client:
        for folder in PEOPLE:  # one version per registration: wait for each before the next
            client.post(
                "/api/v1/people", data={"name": folder}, files=photo_fields(image_files(LFW10 / folder)[:3])
            )
            wait_until_trained(client)
        versions = {v["version"]: v for v in client.get("/api/v1/models").json()["items"]}
        assert sorted(versions) == [1, 2, 3, 4]
        assert [versions[v]["status"] for v in (1, 2, 3, 4)] == ["pruned", "pruned", "ready", "ready"]
        assert "retention policy" in versions[1]["status_message"]
        # Every change makes a version, so they are listed a page at a time, newest first.
        page = client.get("/api/v1/models?offset=1&limit=2").json()
        assert [v["version"] for v in page["items"]] == [3, 2]
        assert (page["total"], page["offset"], page["limit"]) == (4, 1, 2)
        ready = client.get("/api/v1/models?status=ready&limit=1").json()
        assert [v["version"] for v in ready["items"]] == [4] and ready["total"] == 2
        for bad in ("limit=0", "limit=501", "offset=-1", "status=gone", "limit=many"):
            refused = client.get(f"/api/v1/models?{bad}")
            assert refused.status_code == 400, (bad, refused.text)
            assert refused.json()["error"]["code"] == "invalid_request"
        models_dir = app_settings.models_dir
        # Files go right after the versions are marked pruned (which is what stops them being served).
        wait_for(lambda: not (models_dir / "1").exists() and not (models_dir / "2").exists(), what="pruning")
        assert (models_dir / "3" / "model.onnx").is_file() and (models_dir / "4" / "model.onnx").is_file()
        assert client.get("/api/v1/models/1/files/manifest.json").status_code == 404
        assert client.post("/api/v1/models/1/activate").status_code == 409
        assert client.post("/api/v1/models/3/activate").status_code == 200
        assert client.get("/api/v1/models/current").json()["version"] == 3


def test_versions_naming_deleted_people_are_pruned_before_those_that_could_be_made_current(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    """They cannot be made current again and their files are not served, yet they took the places
    kept for rolling back: a tester found the one usable earlier version pruned behind them."""
    worker = WorkerSettings(
        poll_seconds=0.1, heartbeat_seconds=0.3, quiet_seconds=0.0, formats="onnx", keep_versions=2
    )
    app_settings = service_settings(tmp_path, database_url, settings, worker=worker)
    with local_client(create_app(app_settings)) as client:
        ids = []
        for folder in PEOPLE[:3]:  # versions 1, 2, 3 (1 pruned by the third)
            answer = client.post(
                "/api/v1/people", data={"name": folder}, files=photo_fields(image_files(LFW10 / folder)[:3])
            )
            ids.append(answer.json()["id"])
            wait_until_trained(client)
        assert client.delete(f"/api/v1/people/{ids[2]}").status_code == 204  # version 3 names them
        wait_until_trained(client)
        versions = {v["version"]: v for v in client.get("/api/v1/models").json()["items"]}
        assert [versions[v]["status"] for v in (1, 2, 3, 4)] == ["pruned", "ready", "pruned", "ready"]
        assert "names people deleted or merged since" in versions[3]["status_message"]
        assert client.post("/api/v1/models/2/activate").status_code == 200  # the rollback kept
