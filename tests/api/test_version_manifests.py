"""What the API says a version holds (roster, threshold, metrics, files) is what its manifest.json
says: the database keeps no copy. A ready version whose manifest is missing or damaged answers a JSON
error naming it, and the listing still answers, saying which one is damaged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from tests.api.fixtures import local_client, photo_fields, wait_until_trained
from tests.conftest import LFW10

LEGACY_INFO = "/gorillas/face-recognition/api/v1.0/model/info"


def _two_versions(client: TestClient) -> None:
    """Version 1 of one person, version 2 (current) of two."""
    for folder in ("Colin_Powell", "Tony_Blair"):
        photos = image_files(LFW10 / folder)[:3]
        response = client.post("/api/v1/people", data={"name": folder}, files=photo_fields(photos))
        assert response.status_code == 201, response.text
        wait_until_trained(client)


def _as_the_manifest_says(client: TestClient, version: int) -> None:
    shown = client.get(f"/api/v1/models/{version}").json()
    answer = client.get(f"/api/v1/models/{version}/files/manifest.json")
    manifest = answer.json()
    assert shown["people"] == [{k: p.get(k) for k in ("id", "name", "position")} for p in manifest["people"]]
    assert shown["threshold"] == manifest["threshold"]
    assert shown["calibration"] == manifest["calibration"] and shown["calibration"]["method"]
    assert shown["metrics"] == manifest["metrics"] and "train_seconds" in shown["metrics"]
    served = {**manifest["files"], "manifest.json": {"sha256": hashlib.sha256(answer.content).hexdigest()}}
    assert {name: entry["sha256"] for name, entry in shown["files"].items()} == {
        name: entry["sha256"] for name, entry in served.items()
    }


def _error(answer: Any, status: int, code: str, version: int) -> None:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and f"model version {version}" in error["message"], error


def test_a_version_is_what_its_manifest_says(api_settings: Settings) -> None:
    with local_client(create_app(api_settings)) as client:
        _two_versions(client)
        for version in (1, 2):
            _as_the_manifest_says(client, version)

    # Edited on disk (no release does this: it shows where the answers come from), seen by a process
    # that has not read it yet.
    path = api_settings.models_dir / "2" / "manifest.json"
    manifest = json.loads(path.read_bytes())
    manifest["people"][0]["name"] = "Named in the manifest"
    manifest["threshold"] = 0.987
    path.write_text(json.dumps(manifest))
    quiet = api_settings.model_copy(update={"worker": WorkerSettings(embedded=False)})
    with local_client(create_app(quiet)) as client:
        current = client.get("/api/v1/models/current").json()
        assert current["version"] == 2 and current["threshold"] == 0.987
        assert current["people"][0]["name"] == "Named in the manifest"
        users = client.get(LEGACY_INFO).json()["model"]["users"]
        assert users[0]["name"] == "Named in the manifest"


def _damage(models_dir: Path) -> bytes:
    """Version 1's manifest gone (its bytes returned), version 2's (the current one) not JSON."""
    first = models_dir / "1" / "manifest.json"
    saved = first.read_bytes()
    first.unlink()
    (models_dir / "2" / "manifest.json").write_bytes(b"{damaged")
    return saved


def test_a_damaged_version_is_a_json_error_and_the_listing_still_answers(api_settings: Settings) -> None:
    with local_client(create_app(api_settings)) as client:
        _two_versions(client)
        listed = client.get("/api/v1/models").json()["items"]
    saved = _damage(api_settings.models_dir)

    quiet = api_settings.model_copy(update={"worker": WorkerSettings(embedded=False)})
    with local_client(create_app(quiet)) as client:
        _error(client.get("/api/v1/models/1"), 500, "invalid_manifest", 1)
        _error(client.get("/api/v1/models/2"), 500, "invalid_manifest", 2)
        _error(client.get("/api/v1/models/current"), 500, "invalid_manifest", 2)
        _error(client.get("/api/v1/models/1/files/head.safetensors"), 500, "invalid_manifest", 1)
        legacy = client.get(LEGACY_INFO)
        assert legacy.status_code == 500 and legacy.json()["status"] == "failed", legacy.text
        assert "model version 2" in legacy.json()["message"]

        answer = client.get("/api/v1/models")
        assert answer.status_code == 200, answer.text
        items = {item["version"]: item for item in answer.json()["items"]}
        assert sorted(items) == [1, 2] and items[2]["is_current"]
        for version, item in items.items():
            assert item["status"] == "ready" and item["people"] == [] and item["files"] == {}
            assert f"model version {version}" in item["status_message"], item
        assert set(items[1]) == set(listed[0])  # the same shape

        # A damaged manifest is not remembered: version 1 restored is served, and can be made current.
        (api_settings.models_dir / "1" / "manifest.json").write_bytes(saved)
        assert client.get("/api/v1/models/1").json()["people"] == listed[1]["people"]
        assert client.post("/api/v1/models/1/activate").status_code == 200
        assert client.get(LEGACY_INFO).json()["model"]["version"] == 1
