"""Photos scaled for display (``GET .../photos/{id}/file?size=N``) and gzip for the dashboard's files
and JSON answers (issue 21 item 21)."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from PIL import Image

from faceforge.core.dataset import image_files
from tests.api.fixtures import photo_fields
from tests.conftest import FACES

GZIP = {"Accept-Encoding": "gzip"}


def test_a_photo_comes_scaled_for_display_with_its_face_where_it_was(client: TestClient) -> None:
    original = image_files(FACES / "unknown_singles")[0]  # 1000 x 664, about 490 KB
    answer = client.post("/api/v1/people?train=false", data={"name": "A"}, files=photo_fields([original]))
    assert answer.status_code == 201, answer.text
    person = answer.json()
    photo = client.get(f"/api/v1/people/{person['id']}/photos").json()[0]
    url = f"/api/v1/people/{person['id']}/photos/{photo['id']}/file"

    scaled = client.get(url, params={"size": 320})
    assert scaled.status_code == 200 and scaled.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(scaled.content))
    assert max(image.size) == 320
    # Same shape as the photo the face box was found in (one pixel of rounding), so the box drawn in
    # percent of the photo still sits on the face.
    assert abs(image.size[0] / image.size[1] - photo["width"] / photo["height"]) <= 1 / min(image.size)
    assert len(scaled.content) < original.stat().st_size / 5
    assert client.get(url, params={"size": 320}).content == scaled.content  # from the cache, the same

    assert client.get(url).content == original.read_bytes()  # without a size: the stored file itself
    for size in ("8", "99999", "big"):
        refused = client.get(url, params={"size": size})
        assert refused.status_code == 400 and "error" in refused.json(), size


def test_the_dashboard_files_and_json_answers_are_gzipped(client: TestClient) -> None:
    script = client.get("/ui/app.js", headers=GZIP)
    assert script.status_code == 200 and script.headers["content-encoding"] == "gzip"
    schema = client.get("/openapi.json", headers=GZIP)
    assert schema.headers["content-encoding"] == "gzip"
    assert schema.json()["info"]["title"] == "faceforge"  # decoded by the client as any browser would
    # Without Accept-Encoding, nothing changes.
    plain = client.get("/ui/app.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
