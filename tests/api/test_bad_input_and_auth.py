"""Every rejection is a clear 4xx JSON and leaves no rows or files behind; API keys are enforced."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceforge.api.app import create_app
from faceforge.config import LimitSettings, Settings
from faceforge.evaluation.dataset import image_files
from faceforge.export import coreml_models
from tests.api.fixtures import photo_fields, service_settings, wait_until_trained
from tests.conftest import FACES, LFW10

LEGACY = "/gorillas/face-recognition/api/v1.0"


def _nothing_stored(client: TestClient) -> None:
    assert client.get("/api/v1/people").json()["total"] == 0
    photos_dir = client.app.state.services.settings.files_dir / "photos"  # type: ignore[attr-defined]
    assert not photos_dir.exists() or list(photos_dir.iterdir()) == []


def test_registration_rejections(tmp_path: Path, database_url: str, settings: Settings) -> None:
    limits = LimitSettings(max_file_bytes=60_000, max_photos_per_request=3, max_name_length=20)
    app_settings = service_settings(tmp_path, database_url, settings, limits=limits)
    big = next(p for p in image_files(FACES / "deepface_tests") if p.stat().st_size > 60_000)
    small = image_files(LFW10 / "Colin_Powell")
    with TestClient(create_app(app_settings)) as client:
        cases = [
            ({}, [], 400, "invalid_request"),
            ({"name": "   "}, [], 400, "name_required"),
            ({"name": "x" * 21}, [], 400, "name_too_long"),
            (
                {"name": "Ann\nunknown"},
                photo_fields(small[:1]),
                400,
                "name_invalid",
            ),  # would split labels.txt
            ({"name": "Ann", "position": "cook\u2028chef"}, photo_fields(small[:1]), 400, "position_invalid"),
            ({"name": "ok"}, photo_fields(small[:4]), 413, "too_many_photos"),
            ({"name": "ok"}, photo_fields([small[0], big]), 413, "file_too_large"),
        ]
        for data, files, status, code in cases:
            response = client.post("/api/v1/people", data=data, files=files or None)
            assert response.status_code == status, (code, response.text)
            assert response.json()["error"]["code"] == code and response.json()["error"]["message"]
        _nothing_stored(client)
        oversized = client.post(
            "/api/v1/people", data={"name": "ok"}, content=b"x" * 200, headers={"content-length": str(10**10)}
        )
        assert oversized.status_code == 413 and oversized.json()["error"]["code"] == "request_too_large"
        assert client.get("/no/such/path").json() == {"error": "not found"}
        assert client.get("/api/v1/people/12345").json()["error"]["code"] == "not_found"
        assert client.get("/api/v1/models/current").status_code == 409


def test_bad_photos_get_verdicts_not_errors(client: TestClient, tmp_path: Path) -> None:
    files = [
        ("photos", ("empty.jpg", b"", "image/jpeg")),
        ("photos", ("text.jpg", b"hello", "image/jpeg")),
        ("photos", ("dog.jpg", (FACES / "negatives" / "dlib_dog.jpg").read_bytes(), "image/jpeg")),
        ("photos", ("group.jpg", (FACES / "multi" / "dlib_bald_guys.jpg").read_bytes(), "image/jpeg")),
        ("photos", ("ok.jpg", image_files(LFW10 / "Colin_Powell")[0].read_bytes(), "image/jpeg")),
    ]
    body = client.post("/api/v1/people", data={"name": "Colin"}, files=files).json()
    assert [(p["verdict"], p["reasons"]) for p in body["photos"]] == [
        ("rejected", ["empty_file"]),
        ("rejected", ["not_an_image"]),
        ("rejected", ["no_face"]),
        ("rejected", ["multiple_faces"]),
        ("accepted", []),
    ]
    assert body["photo_count"] == 1
    identify_bad = client.post("/api/v1/identify", files={"photo": ("x.jpg", b"garbage")})
    assert identify_bad.status_code in (400, 409)


def test_api_keys(tmp_path: Path, database_url: str, settings: Settings) -> None:
    app_settings = service_settings(
        tmp_path, database_url, settings, admin_keys="admin-1, admin-2", read_keys="reader"
    )
    photo = image_files(LFW10 / "Gerhard_Schroeder")[0]
    with TestClient(create_app(app_settings)) as client:
        assert client.get("/api/v1/people").status_code == 401
        assert client.get("/api/v1/people", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get("/api/v1/people", headers={"X-API-Key": "reader"}).status_code == 200
        denied = client.post("/api/v1/people", data={"name": "x"}, headers={"X-API-Key": "reader"})
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
        created = client.post(
            "/api/v1/people",
            data={"name": "x"},
            files=photo_fields([photo]),
            headers={"Authorization": "Bearer admin-2"},
        )
        assert created.status_code == 201
        legacy = client.post(f"{LEGACY}/user/register", data={"name": "y"}, headers={"X-API-Key": "reader"})
        assert legacy.status_code == 403 and legacy.json()["status"] == "failed"
        assert client.get(f"{LEGACY}/model/info").status_code == 401
        _ = client.get("/api/v1/training", headers={"X-API-Key": "reader"})
        assert client.get("/api/v1/people", headers={"X-API-Key": "reader"}).json()["total"] == 1


def test_legacy_routes_keep_their_shape(client: TestClient) -> None:
    not_ready = client.get(f"{LEGACY}/model/info")
    assert not_ready.status_code == 400
    assert not_ready.json() == {"status": "failed", "error": "model is not ready"}
    missing = client.post(f"{LEGACY}/user/register", data={"position": "cook"})
    assert missing.status_code == 400
    assert missing.json() == {"status": "failed", "error": "bad request", "message": "Name is required"}

    photos = image_files(LFW10 / "Donald_Rumsfeld")[:4]
    registered = client.post(
        f"{LEGACY}/user/register", data={"name": "Donald", "position": "SecDef"}, files=photo_fields(photos)
    )
    assert registered.status_code == 200
    body = registered.json()
    assert body == {
        "status": "success",
        "user": {"id": body["user"]["id"], "name": "Donald", "position": "SecDef"},
    }
    wait_until_trained(client)
    info = client.get(f"{LEGACY}/model/info").json()
    assert info["status"] == "success"
    assert set(info["model"]) == {"version", "url", "users"}
    assert info["model"]["users"] == [{"id": body["user"]["id"], "name": "Donald", "position": "SecDef"}]
    # The original iOS app downloads the URL and compiles it as a Core ML model.
    assert (
        info["model"]["url"]
        == f"http://testserver/api/v1/models/{info['model']['version']}/files/model.mlmodel"
    )
    download = client.get(info["model"]["url"])
    assert download.status_code == 200
    spec = coreml_models.load_spec(download.content)
    assert list(spec.neuralNetworkClassifier.stringClassLabels.vector) == [
        f"Donald ({body['user']['id']})",
        "unknown",
    ]
    assert client.get(f"{LEGACY}/nothing/here").json() == {"error": "not found"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    assert "/api/v1/identify" in client.get("/openapi.json").json()["paths"]
