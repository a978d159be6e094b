"""A burst of changes makes one version: photos dropped on the dashboard arrive one request each,
and the worker waits for them to pause (``quiet_seconds``) before it claims the training.

The server is a real ``faceforge serve`` process, as a dashboard talks to: in the test process the
worker thread would share a heap of several gigabytes with the rest of the suite, and a full garbage
collection there stalls every thread long enough to look like a pause (CI saw a burst split in two)."""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path

import httpx

from faceforge.building.export.device_backbones import DeviceBackboneCache
from faceforge.building.worker.trainer import TrainingWorker
from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.storage import people_store, training_store
from faceforge.storage.engine import make_engine, make_sessionmaker, upgrade_database
from tests.api.fixtures import faceforge_server, photo_fields, service_settings, wait_until_trained
from tests.conftest import LFW10

# Far longer than one photo's request (about 0.1 s here, a second on a busy 2-core machine).
QUIET_SECONDS = 4.0


def test_photos_dropped_one_request_each_make_one_version(tmp_path: Path, settings: Settings) -> None:
    photos = image_files(LFW10 / "Colin_Powell")[:7]
    DeviceBackboneCache(settings.weights_dir).refiner()  # converted now, not by the worker mid-burst
    env = {"FACEFORGE_WORKER__QUIET_SECONDS": str(QUIET_SECONDS)}
    with (
        faceforge_server(tmp_path / "home", settings, env=env) as served,
        httpx.Client(base_url=served.url, timeout=60) as client,
    ):
        created = client.post("/api/v1/people", data={"name": "Colin"}, files=photo_fields(photos[:1]))
        assert created.status_code == 201, created.text
        person = created.json()["id"]
        assert wait_until_trained(client)["current_version"] == 1  # the worker is up and idle

        answered = []
        for photo in photos[1:]:  # what the dashboard's drop zone sends, one after the other
            added = client.post(f"/api/v1/people/{person}/photos", files=photo_fields([photo]))
            assert added.status_code == 201, added.text
            answered.append(time.monotonic())
        gaps = [round(later - earlier, 2) for earlier, later in pairwise(answered)]
        status = wait_until_trained(client)
        items = client.get("/api/v1/models").json()["items"]
        versions = [(item["version"], item["metrics"]["photos"]) for item in items]
        # One version covers the six photos added one request each.
        counts = (status["requested"], status["built"], status["current_version"])
        assert counts == (7, 7, 2), f"versions (number, photos) {versions}; seconds between answers {gaps}"
        assert versions == [(2, 7), (1, 1)]


def test_a_change_landing_between_the_settle_check_and_the_claim_waits_for_its_own_pause(
    tmp_path: Path, settings: Settings
) -> None:
    """The loop asks ``settled`` and then claims: a photo that lands in between (nothing was pending
    when asked) must not be claimed at once, or the rest of its burst becomes a second version (the
    end-to-end test above saw it on a loaded CI machine)."""
    app_settings = service_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'faceforge.db'}",
        settings,
        worker=WorkerSettings(embedded=False, quiet_seconds=QUIET_SECONDS),
    )
    engine = make_engine(app_settings.resolved_database_url)
    upgrade_database(engine)
    sessions = make_sessionmaker(engine)
    worker = TrainingWorker(app_settings, sessions)
    up_to = worker.settled()
    assert up_to == 0  # nothing pending: settled at once
    with sessions.begin() as session:
        people_store.request_training(session)  # the photo that lands now
    assert not worker.run_once(up_to=up_to)
    with sessions() as session:
        assert training_store.request_counts(session) == (1, 0)
    assert worker.settled() is None  # its burst has begun, and it waits for its pause
    engine.dispose()
