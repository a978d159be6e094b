"""Photos scaled for display (``GET .../photos/{id}/file?size=N``) and gzip for the dashboard's files
and JSON answers (issue 21 item 21)."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from faceforge.core.dataset import image_files
from faceforge.serving.vision.decode import display_budget, pixels_decoded
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


def _large(photo: Path, factor: int) -> bytes:
    """``photo`` enlarged ``factor`` times (a phone camera's size), as a JPEG."""
    image = Image.open(photo)
    buffer = io.BytesIO()
    image.resize((image.width * factor, image.height * factor), Image.Resampling.BICUBIC).save(
        buffer, format="JPEG", quality=90
    )
    return buffer.getvalue()


def test_a_large_photo_is_shown_from_a_reduced_decode_within_the_vision_budget(client: TestClient) -> None:
    """A 16 MP photo decoded at full size for a 128 px thumbnail held ~280 MB, outside the vision gate
    (a People page asks for 50 thumbnails at once). Decoded reduced, its face thumbnail still shows
    the face where the small photo's does; and it waits while the pixel budget is taken."""
    small = image_files(FACES / "krasserm_lfw10" / "Colin_Powell")[0]  # 250 x 250
    services = client.app.state.services  # type: ignore[attr-defined]
    large = _large(small, 16)  # 4000 x 4000
    decoded = services.pipeline.decode_for_display(large, longer_side=128)
    assert 128 <= max(decoded.image.shape[:2]) <= 256 and decoded.scale >= 16
    # ... and it holds what it decodes of the vision budget, not the 16 MP of the header
    assert pixels_decoded(large, display_budget(128)) == decoded.image.shape[0] * decoded.image.shape[1]
    ids = []
    for name, data in (("small", small.read_bytes()), ("large", large)):
        answer = client.post(
            "/api/v1/people?train=false",
            data={"name": name},
            files=[("photos", (f"{name}.jpg", data, "image/jpeg"))],
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])

    gate = services.people.gate
    with ThreadPoolExecutor(max_workers=1) as pool:
        with gate.pixels(services.settings.limits.vision_pixels):  # every pixel of the budget taken
            waiting = pool.submit(client.get, f"/api/v1/people/{ids[1]}/thumbnail")
            time.sleep(1.0)
            assert not waiting.done(), "the thumbnail was decoded outside the vision gate's budget"
        shown = waiting.result(timeout=60)
    assert shown.status_code == 200, shown.text
    thumbnails = [
        np.asarray(Image.open(io.BytesIO(client.get(f"/api/v1/people/{i}/thumbnail").content)), np.float64)
        for i in ids
    ]
    assert thumbnails[0].shape == thumbnails[1].shape
    # The same face in both (boxes found apart, resampled apart): a box off by the reduction would
    # show another part of the photo, tens of levels apart on average.
    assert np.abs(thumbnails[0] - thumbnails[1]).mean() < 12, np.abs(thumbnails[0] - thumbnails[1]).mean()
