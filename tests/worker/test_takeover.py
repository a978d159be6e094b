"""A worker that takes the trainer's lease fails the training still marked running before it sweeps
that version's folder: the worker that lost the lease (a database restart) may be about to publish it,
and a version made current after its folder was swept answered 500 on every identify."""

from __future__ import annotations

from pathlib import Path

from faceforge.building.worker.trainer import TrainingWorker
from faceforge.core.config import Settings, WorkerSettings
from faceforge.storage import training_store
from faceforge.storage.engine import make_engine, make_sessionmaker, upgrade_database
from faceforge.storage.people_store import request_training
from tests.api.fixtures import service_settings


def test_taking_the_lease_fails_the_running_version_before_sweeping_its_folder(
    tmp_path: Path, settings: Settings
) -> None:
    app_settings = service_settings(
        tmp_path, f"sqlite:///{tmp_path / 'faceforge.db'}", settings, worker=WorkerSettings(embedded=False)
    )
    engine = make_engine(app_settings.resolved_database_url)
    upgrade_database(engine)
    sessions = make_sessionmaker(engine)
    try:
        with sessions.begin() as session:
            request_training(session)
            lost = training_store.claim_training(session, worker_id="lost", stale_after=60.0, embedder="e")
        assert lost is not None
        # The worker that lost its lease has moved its finished version into place, not yet published.
        folder = app_settings.models_dir / str(lost.version)
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")

        standby = TrainingWorker(app_settings, sessions)
        try:
            assert standby.take_lease()
            assert not folder.exists()  # swept: its version is not ready
            with sessions.begin() as session:
                assert not training_store.publish_version(session, claim=lost)
                assert training_store.current_version(session) is None
                version = training_store.get_version(session, version=lost.version)
            assert version.status == "failed" and "taken over" in (version.status_message or "")
        finally:
            standby.lease.release()
    finally:
        engine.dispose()
