"""CompreFace's "Base64 Support": every route that takes a photo also takes a JSON body of base64
photos (its SDKs send one when given a base64 string). faceforge answered 400 "File is required".
And its detection service, which answered 404."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from faceforge.core.config import LimitSettings, Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from faceforge.serving.api.routes import compreface
from tests.api.fixtures import local_client, service_settings
from tests.conftest import FACES, LFW10

MAX_FILE_BYTES = 200_000  # above a photo of a dog, below a giraffe's


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _similarities(response: Any) -> list[float]:
    assert response.status_code == 200, response.text
    return [match["similarity"] for match in response.json()["result"][0]["face_matches"]]


def _refused(response: Any, status: int, code: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and all(word in body["message"] for word in words), body


def test_photos_in_base64_are_taken_wherever_a_photo_is(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    limits = LimitSettings(max_file_bytes=MAX_FILE_BYTES)
    app_settings = service_settings(
        tmp_path, database_url, settings, limits=limits, worker=WorkerSettings(embedded=False)
    )
    colin = image_files(LFW10 / "Colin_Powell")
    tony = image_files(LFW10 / "Tony_Blair")[0]
    with local_client(create_app(app_settings)) as client:
        # Verification: the same answer from a form and from JSON, for the same person and another.
        verified = {}
        for target in (colin[1], tony):
            form = client.post(
                "/api/v1/verification/verify",
                files={"source_image": colin[0].open("rb"), "target_image": target.open("rb")},
            )
            as_json = client.post(
                "/api/v1/verification/verify",
                json={"source_image": _b64(colin[0]), "target_image": _b64(target)},
            )
            assert _similarities(as_json) == _similarities(form)
            verified[target] = _similarities(as_json)[0]
        assert verified[tony] < 0.5 < verified[colin[1]], verified

        # Add a face from base64; what is stored is the photo's own bytes.
        added = client.post(
            "/api/v1/recognition/faces", params={"subject": "Colin"}, json={"file": _b64(colin[0])}
        )
        assert added.status_code == 201, added.text
        image_id = added.json()["image_id"]
        assert client.get(f"/api/v1/recognition/faces/{image_id}/img").content == colin[0].read_bytes()
        # The same photo again (a client syncing its photos once more) answers the stored one's id,
        # storing nothing twice: it was a 400 for every photo.
        again = client.post(
            "/api/v1/recognition/faces", params={"subject": "Colin"}, files={"file": colin[0].open("rb")}
        )
        assert again.status_code == 201 and again.json() == added.json(), again.text

        # As `base64` writes it (76 columns), and as a browser's data URL, unpadded: the same photo.
        wrapped = base64.encodebytes(colin[1].read_bytes()).decode("ascii")
        data_url = "data:image/jpeg;base64," + _b64(colin[1]).rstrip("=")
        answers = [
            client.post(f"/api/v1/recognition/faces/{image_id}/verify", **request).json()["result"][0][
                "similarity"
            ]
            for request in (
                {"files": {"file": colin[1].open("rb")}},
                {"json": {"file": wrapped}},
                {"json": {"file": data_url}},
            )
        ]
        assert answers[0] > 0.5 and answers == [answers[0]] * 3, answers

        verify = f"/api/v1/recognition/faces/{image_id}/verify"  # (recognize needs a version)
        no_face = sorted((FACES / "negatives").iterdir())[0]
        _refused(client.post(verify, json={"file": _b64(no_face)}), 400, 28)  # as from a form
        _refused(client.post(verify, json={"file": "not base64!"}), 400, 26, "file is not base64")
        # A data URL's head is taken at the start only: elsewhere it is text in the middle.
        inside = _b64(colin[1])[:400] + "data:x;base64," + _b64(colin[1])[400:]
        _refused(client.post(verify, json={"file": inside}), 400, 26, "file is not base64")
        _refused(client.post(verify, json={"file": 12}), 400, 26, "file must be a string")
        _refused(client.post(verify, json={}), 400, 33, "file is required", "base64")
        # A photo under another name, or beside it, is refused rather than dropped; so are two in
        # one field of a form (the last was taken).
        _refused(client.post(verify, json={"image": _b64(colin[0])}), 400, 26, "unexpected fields", "'image'")
        _refused(client.post(verify, files={"photo": colin[0].open("rb")}), 400, 26, "'photo'")
        two = [("file", colin[0].open("rb")), ("file", colin[1].open("rb"))]
        _refused(client.post(verify, files=two), 400, 26, "'file' takes one photo")
        # JSON sent as another type (curl -d's default is a form) is told what to send.
        as_form = {"content-type": "application/x-www-form-urlencoded"}  # curl -d's own default
        _refused(
            client.post(verify, content=f'{{"file": "{_b64(colin[0])}"}}', headers=as_form),
            415,
            0,
            "application/json",
        )
        # JSON with no type at all, likewise; and a key given twice is refused (the parser kept the last).
        typeless = client.post(verify, content=f'{{"file": "{_b64(colin[0])}"}}')  # httpx sends no type
        assert "content-type" not in typeless.request.headers
        _refused(typeless, 415, 0, "application/json")
        twice = f'{{"file": "{_b64(no_face)}", "file": "{_b64(colin[0])}"}}'
        _refused(
            client.post(verify, content=twice, headers={"content-type": "application/json"}),
            400,
            26,
            "'file' given more than once",
        )
        plain = {"content-type": "text/plain"}
        _refused(
            client.post(verify, content=f'{{"file": "{_b64(colin[0])}"}}', headers=plain),
            415,
            0,
            "application/json",
        )
        # Nested too deeply for Python's parser: a clear 400, not a 500 (a 6 KB body did it).
        deep = {"content-type": "application/json"}
        _refused(
            client.post(verify, content="[" * 3000 + "]" * 3000, headers=deep), 400, 26, "nested too deeply"
        )
        _refused(client.post(verify, json=[_b64(colin[0])]), 400, 26, "JSON object")
        _refused(
            client.post(verify, content=b'{"file": ', headers={"content-type": "application/json"}),
            400,
            26,
            "not valid JSON",
        )
        big = next(p for p in sorted((FACES / "negatives").iterdir()) if p.stat().st_size > MAX_FILE_BYTES)
        _refused(
            client.post("/api/v1/recognition/faces", params={"subject": "Big"}, json={"file": _b64(big)}),
            413,
            0,
            "larger than",
        )
        _refused(
            client.post("/api/v1/verification/verify", json={"source_image": _b64(colin[0])}),
            400,
            33,  # as a missing file's
            "target_image is required",
        )
        # The detection service (CompreFace's SDKs' initFaceDetectionService): boxes, landmarks on
        # request, a limit; it answered 404. The group photo's faces come largest first.
        group = FACES / "multi" / "azure_identification1_Family1.jpg"  # four people
        detected = client.post(
            "/api/v1/detection/detect",
            params={"face_plugins": "landmarks,calculator", "status": "true"},
            json={"file": _b64(group)},
        )
        assert detected.status_code == 200, detected.text
        faces = detected.json()["result"]
        areas = [
            (f["box"]["x_max"] - f["box"]["x_min"]) * (f["box"]["y_max"] - f["box"]["y_min"]) for f in faces
        ]
        assert len(faces) >= 3 and areas == sorted(areas, reverse=True), faces
        assert all(len(f["landmarks"]) == 5 and f["execution_time"]["detector"] > 0 for f in faces)
        assert all(len(f["embedding"]) == 640 for f in faces)  # the calculator plugin: its embedding
        assert abs(sum(v * v for v in faces[0]["embedding"]) - 1) < 1e-4
        limited = client.post(
            "/api/v1/detection/detect",
            params={"limit": 2, "status": "true"},
            files={"file": group.open("rb")},
        )
        assert [f["box"] for f in limited.json()["result"]] == [f["box"] for f in faces[:2]]
        assert "landmarks" not in limited.json()["result"][0]
        # Without the calculator, detection alone: no face was embedded (each took the embedder's time).
        assert all(
            "embedding" not in f and f["execution_time"]["calculator"] == 0.0
            for f in limited.json()["result"]
        ), limited.json()
        _refused(client.post("/api/v1/detection/detect", json={"file": _b64(no_face)}), 400, 28)

        # The OpenAPI document says both forms, and that one is required.
        paths = client.get("/openapi.json").json()["paths"]
        for path in (
            "/api/v1/recognition/recognize",
            "/api/v1/verification/verify",
            "/api/v1/detection/detect",
        ):
            body = paths[path]["post"]["requestBody"]
            assert body["required"] is True, (path, body)
            assert set(body["content"]) == {"multipart/form-data", "application/json"}, (path, body)

        # Nothing refused was stored: Colin's one photo is all there is.
        assert client.get("/api/v1/recognition/faces").json()["total_elements"] == 1


def test_a_limit_shares_the_embedding_time_over_every_face_embedded() -> None:
    """``calculator`` is one face's share of the photo's embedding: with ``limit=1`` on a photo of 24
    faces, the 24 faces' time was given as the one face's."""
    seconds = {"detector": 0.1, "calculator": 0.24, compreface.ANALYSED: 24.0}
    body = compreface._with_status({"result": [{}]}, True, seconds)
    assert body["result"][0]["execution_time"] == {"detector": 100.0, "calculator": 10.0}
