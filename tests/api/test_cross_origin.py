"""Cross-origin calls (``FACEFORGE_CORS_ORIGINS``): a named origin's page may call the API and read its
answers, refusals and our own faults included, and its preflights are answered without a key; any
other origin gets no permission. (The setting: ``tests/test_config.py``; a real browser importing the
client from another origin: ``tests/web/test_browser_client.py``.)"""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from tests.api.fixtures import LOOPBACK_CLIENT, photo_fields, service_settings
from tests.conftest import LFW10

APP = "https://app.example.com"
OTHER = "https://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}


def _preflight(client: TestClient, origin: str) -> httpx.Response:
    answer: httpx.Response = client.options("/api/v1/identify", headers={"Origin": origin, **PREFLIGHT})
    return answer


def test_a_named_origin_may_call_with_its_key_and_read_every_answer(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    origins = f"{APP}/, http://LOCALHOST:3000"
    named = service_settings(
        tmp_path, database_url, settings, admin_keys="admin", read_keys="reader", cors_origins=origins
    )
    with TestClient(create_app(named), client=LOOPBACK_CLIENT) as client:
        answer = _preflight(client, APP)
        assert answer.status_code == 204, answer.text
        assert answer.headers["access-control-allow-origin"] == APP
        assert "POST" in answer.headers["access-control-allow-methods"]
        assert "X-API-Key" in answer.headers["access-control-allow-headers"]
        assert "Origin" in answer.headers["vary"]
        # Named as http://LOCALHOST:3000; browsers send it in lower case.
        local = client.options("/api/v1/people", headers={"Origin": "http://localhost:3000", **PREFLIGHT})
        assert local.headers["access-control-allow-origin"] == "http://localhost:3000"

        photo = photo_fields(image_files(LFW10 / "Colin_Powell")[:1])
        created = client.post(
            "/api/v1/people",
            data={"name": "Colin"},
            files=photo,
            headers={"Origin": APP, "X-API-Key": "admin"},
        )
        assert created.status_code == 201, created.text
        assert created.headers["access-control-allow-origin"] == APP
        assert "Retry-After" in created.headers["access-control-expose-headers"]
        # A refusal is readable too: the page can tell a wrong key from a network failure.
        refused = client.get("/api/v1/people", headers={"Origin": APP, "X-API-Key": "wrong"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["access-control-allow-origin"] == APP
        missing = client.get("/api/v1/people/999999", headers={"Origin": APP, "X-API-Key": "reader"})
        assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == APP

        # Every answer varies by origin, those without permission too: a browser that kept one given
        # to the dashboard (no Origin) must not hand it to the named origin's page.
        same_origin = client.get("/api/v1/people", headers={"X-API-Key": "reader"})
        assert (
            "Origin" in same_origin.headers["vary"]
            and "access-control-allow-origin" not in same_origin.headers
        )
        assert "Content-Range" in created.headers["access-control-expose-headers"]

        # Any other origin: no permission on its preflight or its answers (the key still decides what
        # a request may do; the browser keeps the answer from the page).
        for origin in (OTHER, "https://app.example.com.evil.example", "null"):
            other = _preflight(client, origin)
            assert "access-control-allow-origin" not in other.headers, origin
            assert other.status_code >= 400 and other.json()["error"]["code"], other.text
            read = client.get("/api/v1/people", headers={"Origin": origin, "X-API-Key": "reader"})
            assert "access-control-allow-origin" not in read.headers

    unnamed = service_settings(tmp_path, database_url, settings, admin_keys="admin")
    with TestClient(create_app(unnamed), client=LOOPBACK_CLIENT) as client:
        assert "access-control-allow-origin" not in _preflight(client, APP).headers
        # Vary all the same: answers cached before an origin is named are not handed to it later.
        assert "Origin" in client.get("/client/faceforge.js").headers["vary"]


def test_our_own_faults_are_readable_by_a_named_origin(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    """An unexpected error's 500 is answered by Starlette outside every middleware of ours."""
    app = create_app(service_settings(tmp_path, database_url, settings, admin_keys="a", cors_origins=APP))

    def fails() -> None:
        raise RuntimeError("a defect of ours")

    app.add_api_route("/api/v1/fails", fails)
    with TestClient(app, client=LOOPBACK_CLIENT, raise_server_exceptions=False) as client:
        answer = client.get("/api/v1/fails", headers={"Origin": APP, "X-API-Key": "a"})
        assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal_error"
        assert answer.headers["access-control-allow-origin"] == APP and "Origin" in answer.headers["vary"]


def test_without_keys_a_named_origin_passes_and_others_are_refused(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    local_app = "http://localhost:3000"
    named = service_settings(tmp_path, database_url, settings, cors_origins=local_app)
    with TestClient(create_app(named), client=LOOPBACK_CLIENT, base_url="http://127.0.0.1:8000") as client:
        created = client.post("/api/v1/people", data={"name": "Ann"}, headers={"Origin": local_app})
        assert created.status_code == 201, created.text
        assert created.headers["access-control-allow-origin"] == local_app
        refused = client.post("/api/v1/people", data={"name": "Mallory"}, headers={"Origin": OTHER})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "foreign_origin"
        assert "FACEFORGE_CORS_ORIGINS" in refused.json()["error"]["message"]
        # A named origin's page is still refused when it reaches faceforge by another name (DNS
        # rebinding: its own domain resolving to 127.0.0.1).
        rebound = {"Origin": local_app, "Host": "localhost.evil.example:8000"}
        refused = client.post("/api/v1/people", data={"name": "Mallory"}, headers=rebound)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "foreign_host"
        assert client.get("/api/v1/people").json()["total"] == 1
