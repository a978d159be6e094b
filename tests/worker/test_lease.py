"""The trainer's lease on a real PostgreSQL: a worker whose database session ends (a server restart,
a failover, ``pg_terminate_backend``) while it trains must notice on its next poll that a standby holds
the lease now, and stand by instead of failing the standby's running version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from faceforge.building.worker.lease import PostgresLease
from faceforge.building.worker.trainer import TrainingWorker
from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from faceforge.storage.engine import make_engine, make_sessionmaker, upgrade_database
from tests.api.fixtures import POSTGRES_SERVER, local_client, photo_fields, service_settings, wait_for
from tests.conftest import LFW10

# Long enough that the first worker wakes from its pause, finds its version taken over and polls
# again while the standby is still training.
PAUSE_SECONDS = 3.0


def _terminate_lease_holder(lease: PostgresLease) -> None:
    """End the lease holder's database session from outside, as a server restart would."""
    assert lease.key is not None
    unsigned = lease.key & 0xFFFF_FFFF_FFFF_FFFF
    holder = text(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        " AND classid = CAST(:high AS bigint)::oid AND objid = CAST(:low AS bigint)::oid"
    )
    key = {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF}
    admin = create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            [pid] = connection.execute(holder, key).scalars().all()
            assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
            # The backend exits (and its locks go) shortly after the signal.
            wait_for(lambda: not connection.execute(holder, key).all(), what="the lease holder to exit")
    finally:
        admin.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_whose_session_ends_mid_training_stands_by(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    app_settings = service_settings(
        tmp_path,
        database_url,
        settings,
        worker=WorkerSettings(
            embedded=False,
            poll_seconds=0.1,
            heartbeat_seconds=0.3,
            formats="onnx",
            pause_before_publish_seconds=PAUSE_SECONDS,
        ),
    )
    engine = make_engine(app_settings.resolved_database_url)
    upgrade_database(engine)
    first = TrainingWorker(app_settings, make_sessionmaker(engine))
    second = TrainingWorker(app_settings, make_sessionmaker(engine))
    stop_first: Callable[[], None] = second.lease.release  # replaced once the first worker runs
    try:
        with local_client(create_app(app_settings)) as client:
            registered = client.post(
                "/api/v1/people",
                data={"name": "Putin"},
                files=photo_fields(image_files(LFW10 / "Vladimir_Putin")[:4]),
            )
            assert registered.status_code == 201, registered.text
            # Started after the app's networks are loaded: torch.export is not thread-safe.
            stop_first = first.start_in_thread()

            def paused() -> bool:
                status = client.get("/api/v1/training").json()
                return bool(status["stage"] == "paused" and status["building_version"] == 1)

            wait_for(paused, what="the first worker to pause before publishing version 1")
            assert isinstance(first.lease, PostgresLease)
            _terminate_lease_holder(first.lease)

            # The standby acquires the lease, so version 1's worker counts as gone: taken over at once.
            assert second.run_once()
            assert client.get("/api/v1/models/1").json()["status"] == "failed"
            built = client.get("/api/v1/models/2").json()
            assert built["status"] == "ready", built["status_message"]
            assert client.get("/api/v1/models/current").json()["version"] == 2
            # The first worker polls, finds its lease gone and stands by (it did so while the standby
            # trained, or version 2 would have been failed above; a busy machine may delay the flag).
            wait_for(lambda: not first.holds_lease, timeout=30, what="the first worker to stand by")
            assert [v["version"] for v in client.get("/api/v1/models").json()["items"]] == [2, 1]
    finally:
        stop_first()
        second.lease.release()
        engine.dispose()
