"""An upgrade that changes the embedder: stored photos are embedded again from their files, a version
is trained from them, and an older release's version is not used to identify. Strangers' photos too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select, update

from faceforge.building.worker.trainer import TrainingWorker
from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.serving.api.app import create_app
from faceforge.storage.engine import make_engine, make_sessionmaker, upgrade_database
from faceforge.storage.tables import PhotoRow, StrangerPhotoRow
from tests.api.fixtures import local_client, photo_fields, service_settings
from tests.conftest import LFW10

OLD_EMBEDDER = "facenet-casia-flip"  # the release before the fused embedder stored 512-d vectors
PEOPLE = ("Colin_Powell", "Tony_Blair", "Hugo_Chavez")


def test_photos_of_an_older_embedder_are_embedded_again(tmp_path: Path, settings: Settings) -> None:
    app_settings = service_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'faceforge.db'}",
        settings,
        worker=WorkerSettings(embedded=False, formats="onnx"),
    )
    engine = make_engine(app_settings.resolved_database_url)
    upgrade_database(engine)
    sessions = make_sessionmaker(engine)
    worker = TrainingWorker(app_settings, sessions)
    with local_client(create_app(app_settings)) as client:
        for folder in PEOPLE:
            response = client.post(
                "/api/v1/people", data={"name": folder}, files=photo_fields(image_files(LFW10 / folder)[:4])
            )
            assert response.status_code == 201, response.text
        stranger = client.post(
            "/api/v1/strangers", files=photo_fields(image_files(LFW10 / "Gerhard_Schroeder")[:2])
        )
        assert stranger.status_code == 201, stranger.text
        assert worker.run_once()
        with sessions() as session:
            rows = session.execute(select(PhotoRow.id, PhotoRow.embedding, PhotoRow.stored_name)).all()
            stranger_rows = session.execute(select(StrangerPhotoRow.id, StrangerPhotoRow.embedding)).all()
        enrolled = {photo_id: np.frombuffer(data, "<f4") for photo_id, data, _ in rows}

        # What an older release left: 512-d vectors of another network, and one photo file lost.
        with sessions.begin() as session:
            session.execute(update(PhotoRow).values(embedder=OLD_EMBEDDER, embedding=bytes(512 * 4)))
            session.execute(update(StrangerPhotoRow).values(embedder=OLD_EMBEDDER, embedding=bytes(512 * 4)))
        lost_id, _, lost_name = rows[0]
        (app_settings.files_dir / "photos" / lost_name).unlink()

        worker.reembed_after_upgrade()
        status = client.get("/api/v1/training").json()
        assert status["state"] == "queued"  # the upgrade asked for a version of its own
        with sessions() as session:
            after = {row.id: row for row in session.scalars(select(PhotoRow))}
            strangers_after = {row.id: row for row in session.scalars(select(StrangerPhotoRow))}
        for photo_id, original_bytes in stranger_rows:  # strangers are training data too
            assert strangers_after[photo_id].embedder == EMBEDDER_NAME
            again = np.frombuffer(strangers_after[photo_id].embedding, "<f4")
            np.testing.assert_allclose(again, np.frombuffer(original_bytes, "<f4"), atol=1e-5)
        assert after[lost_id].embedder == OLD_EMBEDDER  # no file: kept as it was, left out of training
        for photo_id, original in enrolled.items():
            if photo_id == lost_id:
                continue
            assert after[photo_id].embedder == EMBEDDER_NAME
            # The stored box through the same refine, crop and align steps: the enrolment embedding.
            np.testing.assert_allclose(np.frombuffer(after[photo_id].embedding, "<f4"), original, atol=1e-5)

        assert worker.run_once()
        current = client.get("/api/v1/models/current").json()
        assert current["version"] == 2
        manifest = client.get("/api/v1/models/2/files/manifest.json").json()
        assert sum(person["photos"] for person in manifest["people"]) == 3 * 4 - 1  # all but the lost one
        probe = image_files(LFW10 / "Tony_Blair")[6]
        found = client.post("/api/v1/identify", files={"photo": (probe.name, probe.read_bytes())}).json()
        assert found["faces"][0]["match"]["name"] == "Tony_Blair"
    worker.lease.release()
