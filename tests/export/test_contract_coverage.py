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
        ("Phone", image_files(PHONE)[:2]),
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
    assert [people[names[photo_id]] for _, photo_id, _, _ in extra] == ["Phone", "Close"]

    files = PhotoFiles(services.settings.files_dir / "photos")
    head = fit_head(
        np.stack([np.frombuffer(face.embedding, "<f4") for face in faces]),
        [str(face.person_id) for face in faces],
    )
    chosen = [VectorPhoto(p, i, files.path(n).read_bytes()) for p, i, n in first]
    chosen += [VectorPhoto(p, i, files.path(n).read_bytes(), box) for p, i, n, box in extra]
    colin, phone, close = contract_vectors(pipeline, head, chosen)["vectors"]
    assert colin["chip"]["reduction"] == 1 and not colin["face"]["beyond_photo"]
    assert phone["chip"]["reduction"] >= 2, phone["chip"]  # sampled after a whole-factor reduction
    assert close["face"]["beyond_photo"], close["face"]  # black beyond the photo


def _face(x: float, y: float, side: float) -> tuple[dict[str, float], list[list[float]]]:
    """A square box and five points where a frontal face's fall in it."""
    marks = [[0.31, 0.30], [0.68, 0.30], [0.49, 0.52], [0.34, 0.70], [0.65, 0.70]]
    return {"x": x, "y": y, "width": side, "height": side}, [[x + u * side, y + v * side] for u, v in marks]


def test_the_extra_vectors_are_chosen_by_the_path_each_photo_takes() -> None:
    """A reviewer's cases: a face of 300-550 px was picked as "large" though its chip is sampled
    without reduction (that takes a chip pixel of four photo pixels, not two); and a face whose crop
    reaches beyond its photo was dropped when it was also the largest."""
    small = [(1, 1, "a", *_face(60, 60, 110), 250, 250), (2, 2, "b", *_face(60, 60, 110), 250, 250)]
    assert coverage_photos(small, {1, 2}) == []
    middling = (3, 3, "c", *_face(300, 300, 450), 1500, 1500)  # large, yet sampled without reduction
    assert coverage_photos([*small, middling], {1}) == []
    phone = (3, 4, "d", *_face(400, 500, 900), 2000, 2400)
    picked = coverage_photos([*small, middling, phone], {1})
    assert [row[1] for row in picked] == [4] and picked[0][3] == phone[3]  # with the face meant
    at_edge = (2, 5, "e", *_face(-10, -10, 230), 250, 250)  # the only candidate, and the largest
    assert [row[1] for row in coverage_photos([*small, at_edge], {1, 2})] == [5]
    assert [row[1] for row in coverage_photos([*small, phone, at_edge], {1, 2})] == [4, 5]
