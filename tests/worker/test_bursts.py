"""A burst of changes makes one version: photos dropped on the dashboard arrive one request each,
and the worker waits for them to pause (``quiet_seconds``) before it claims the training."""

from __future__ import annotations

from pathlib import Path

from faceforge.building.export.device_backbones import DeviceBackboneCache
from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from tests.api.fixtures import local_client, photo_fields, service_settings, wait_until_trained
from tests.conftest import LFW10

# Longer than one photo's request on a busy 2-core machine (decode, detect, embed: about a second).
QUIET_SECONDS = 4.0


def test_photos_dropped_one_request_each_make_one_version(tmp_path: Path, settings: Settings) -> None:
    worker = WorkerSettings(
        poll_seconds=0.1, heartbeat_seconds=0.3, formats="onnx", quiet_seconds=QUIET_SECONDS
    )
    app_settings = service_settings(
        tmp_path, f"sqlite:///{tmp_path / 'faceforge.db'}", settings, worker=worker
    )
    photos = image_files(LFW10 / "Colin_Powell")[:7]
    DeviceBackboneCache(settings.weights_dir).refiner()  # converted now, not by the worker mid-burst
    with local_client(create_app(app_settings)) as client:
        created = client.post("/api/v1/people", data={"name": "Colin"}, files=photo_fields(photos[:1]))
        assert created.status_code == 201, created.text
        person = created.json()["id"]
        assert wait_until_trained(client)["current_version"] == 1  # the worker is up and idle

        for photo in photos[1:]:  # what the dashboard's drop zone sends, one after the other
            added = client.post(f"/api/v1/people/{person}/photos", files=photo_fields([photo]))
            assert added.status_code == 201, added.text
        status = wait_until_trained(client)
        # One version covers the six photos added one request each.
        assert (status["requested"], status["built"], status["current_version"]) == (7, 7, 2)
        assert [v["version"] for v in client.get("/api/v1/models").json()["items"]] == [2, 1]
