"""The contract vectors take every path of the app-side contract a phone meets: the first people's
first photos were LFW's small, centred faces, so an app that skipped the chip's whole-factor reduction
(every phone photo takes it) or filled the crop beyond the photo wrongly passed every vector."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from faceforge.building.export.contract_vectors import VectorPhoto, contract_vectors, coverage_photos
from faceforge.building.head_fitting import fit_head
from faceforge.core.dataset import image_files
from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.serving.vision.pipeline import FacePipeline
from faceforge.storage import people_store
from faceforge.storage.photo_files import PhotoFiles
from tests.api.fixtures import photo_fields
from tests.conftest import FACES, LFW10

PHONE = FACES / "deepface_tests" / "deepface_id01"  # phone-sized photos: faces of 500 px and more
CLOSE = FACES / "azure_face_samples" / "Family1-Dad"  # the face fills the photo: the crop goes beyond


def test_a_phone_photo_and_a_face_at_the_edge_get_vectors(
    quiet_client: TestClient, pipeline: FacePipeline
) -> None:
    for name, photos in (
        ("Colin", image_files(LFW10 / "Colin_Powell")[:3]),
        ("Phone", image_files(PHONE)[:3]),
        ("Close", image_files(CLOSE)),
    ):
        added = quiet_client.post(
            "/api/v1/people?train=false", data={"name": name}, files=photo_fields(photos)
        )
        assert added.status_code == 201, added.text
    services = quiet_client.app.state.services  # type: ignore[attr-defined]
    with services.sessions() as session:
        first = people_store.first_photos(session, embedder=EMBEDDER_NAME, limit=1)
        geometry = people_store.photo_geometry(session, embedder=EMBEDDER_NAME)
        faces, _ = people_store.enrolled_faces(session, embedder=EMBEDDER_NAME)
    extra = coverage_photos(geometry, {photo_id for _, photo_id, _ in first})
    names = {row[1]: row[0] for row in geometry}
    people = {person["id"]: person["name"] for person in quiet_client.get("/api/v1/people").json()["items"]}
    assert [people[names[photo_id]] for _, photo_id, _ in extra] == ["Phone", "Close"]

    files = PhotoFiles(services.settings.files_dir / "photos")
    head = fit_head(
        np.stack([np.frombuffer(face.embedding, "<f4") for face in faces]),
        [str(face.person_id) for face in faces],
    )
    chosen = [VectorPhoto(p, i, files.path(n).read_bytes()) for p, i, n in [*first, *extra]]
    colin, phone, close = contract_vectors(pipeline, head, chosen)["vectors"]
    assert colin["chip"]["reduction"] == 1 and not colin["face"]["beyond_photo"]
    assert phone["chip"]["reduction"] >= 2, phone["chip"]  # sampled after a whole-factor reduction
    assert close["face"]["beyond_photo"], close["face"]  # black beyond the photo


def test_no_extra_vectors_when_every_face_is_small_and_inside() -> None:
    box = {"x": 60.0, "y": 60.0, "width": 110.0, "height": 120.0}
    geometry = [(1, 1, "a", box, 250, 250), (2, 2, "b", box, 250, 250), (2, 3, "c", box, 250, 250)]
    assert coverage_photos(geometry, {1, 2}) == []
    large = {"x": 400.0, "y": 500.0, "width": 640.0, "height": 700.0}
    assert coverage_photos([*geometry, (3, 4, "d", large, 1500, 2000)], {1, 2}) == [(3, 4, "d")]
