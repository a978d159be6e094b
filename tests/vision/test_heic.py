"""HEIC/HEIF photos (what iPhones take) are photos like any other: decoded, enrolled and identified.

The HEIC files are encoded here from the shared JPEG photos (pillow-heif, a test-only dependency);
faceforge decodes them with pi-heif."""

from __future__ import annotations

import io
from pathlib import Path

import pillow_heif
from fastapi.testclient import TestClient
from PIL import Image

from faceforge.serving.vision.decode import photo_kind
from faceforge.serving.vision.pipeline import FacePipeline
from tests.conftest import LFW10

BLAIR = sorted((LFW10 / "Tony_Blair").iterdir())


def heic_of(path: Path) -> bytes:
    with Image.open(path) as photo:
        buffer = io.BytesIO()
        pillow_heif.from_pillow(photo.convert("RGB")).save(buffer, format="HEIF", quality=90)
    data = buffer.getvalue()
    assert data[4:12] == b"ftypheic"
    return data


def test_a_heic_photo_is_decoded_upright_with_its_face(pipeline: FacePipeline) -> None:
    data = heic_of(BLAIR[0])
    assert photo_kind(data) == ("heic", "image/heic")
    image = pipeline.decode(data)
    with Image.open(BLAIR[0]) as jpeg:
        assert image.shape == (jpeg.height, jpeg.width, 3)
    faces = pipeline.analyze(data, single_face=True)
    assert faces.reasons == [] and len([f for f in faces.faces if not f.reasons]) == 1


def test_heic_photos_are_enrolled_and_served_back(quiet_client: TestClient) -> None:
    photos = [heic_of(path) for path in BLAIR[:2]]
    response = quiet_client.post(
        "/api/v1/people?train=false",
        data={"name": "Tony"},
        files=[("photos", (f"IMG_000{i}.HEIC", data, "image/heic")) for i, data in enumerate(photos)],
    )
    assert response.status_code == 201, response.text
    person = response.json()
    assert [v["verdict"] for v in person["photos"]] == ["accepted", "accepted"]
    stored = quiet_client.get(f"/api/v1/people/{person['id']}/photos").json()
    assert [p["content_type"] for p in stored] == ["image/heic", "image/heic"]
    served = quiet_client.get(f"/api/v1/people/{person['id']}/photos/{stored[0]['id']}/file")
    assert served.status_code == 200 and served.content == photos[0]
    assert served.headers["content-type"] == "image/heic"
