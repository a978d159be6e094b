"""Without API keys faceforge trusts loopback, but web pages run on loopback too: a request from a
page of another origin, or one that names another host (DNS rebinding), is refused; the dashboard
served here, and CLI and SDK clients (no ``Origin``), keep working."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from tests.api.fixtures import LOOPBACK_CLIENT, local_client, photo_fields, service_settings
from tests.conftest import LFW10

EVIL = "https://evil.example"


def _refused(response: object, code: str) -> None:
    assert response.status_code == 403, response.text  # type: ignore[attr-defined]
    assert response.json()["error"]["code"] == code  # type: ignore[attr-defined]


def test_web_pages_of_other_origins_cannot_call_a_server_without_keys(client: TestClient) -> None:
    photo = photo_fields(image_files(LFW10 / "Colin_Powell")[:1])
    # Another origin's page POSTs (a form or fetch() needs no permission to send): refused unread.
    _refused(
        client.post("/api/v1/people", data={"name": "x"}, files=photo, headers={"Origin": EVIL}),
        "foreign_origin",
    )
    _refused(client.post("/api/v1/people", data={"name": "x"}, headers={"Origin": "null"}), "foreign_origin")
    _refused(
        client.post("/api/v1/models/1/activate", headers={"Origin": "http://localhost:9999"}),
        "foreign_origin",
    )
    deepstack = client.post("/v1/vision/face/delete", data={"userid": "x"}, headers={"Origin": EVIL})
    assert deepstack.status_code == 403 and deepstack.json()["success"] is False
    compreface = client.post("/api/v1/recognition/subjects", json={"subject": "x"}, headers={"Origin": EVIL})
    assert compreface.status_code == 403 and set(compreface.json()) == {"message", "code"}
    # DNS rebinding: the page's own name resolves to 127.0.0.1, and the browser sends it as Host.
    for host in ("evil.example", "evil.example:8000", "192.168.1.20:8000"):
        _refused(client.get("/api/v1/people", headers={"Host": host}), "foreign_host")
        _refused(client.get("/", headers={"Host": host}), "foreign_host")
    assert client.get("/api/v1/people").json()["total"] == 0

    # The dashboard served here (same origin), CLI and SDK clients (no Origin), any loopback name.
    same_origin = {"Origin": str(client.base_url).rstrip("/")}
    created = client.post("/api/v1/people", data={"name": "Colin"}, files=photo, headers=same_origin)
    assert created.status_code == 201, created.text
    assert client.post("/api/v1/people", data={"name": "Ann"}).status_code == 201
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "app.localhost:8000"):
        assert client.get("/api/v1/people", headers={"Host": host}).status_code == 200, host
    moved = {"Host": "localhost:8000", "Origin": "http://localhost:8000"}
    assert client.get("/api/v1/people", headers=moved).json()["total"] == 2


def test_keys_or_an_open_network_change_what_is_checked(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    keyed = create_app(service_settings(tmp_path, database_url, settings, admin_keys="admin"))
    with TestClient(keyed, client=LOOPBACK_CLIENT) as client:  # keys decide; pages need the key too
        answer = client.get("/api/v1/people", headers={"Origin": EVIL, "X-API-Key": "admin"})
        assert answer.status_code == 200
    opened = create_app(
        service_settings(
            tmp_path, database_url, settings, open_network_without_keys=True, allowed_hosts="faceforge.lan"
        )
    )
    with local_client(opened) as client:  # reached by its addresses and names on the network, not pages
        for host in (
            "faceforge.lan:8000",
            "FACEFORGE.LAN",
            "192.168.1.5:8000",
            "[fe80::1]:8000",
            "localhost",
        ):
            assert client.get("/api/v1/people", headers={"Host": host}).status_code == 200, host
        # A page whose name was rebound to this server's address names itself, and its origin matches:
        # it was served, and any site someone on the network opened could change everything.
        rebound = {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}
        _refused(client.post("/api/v1/people", data={"name": "x"}, headers=rebound), "foreign_host")
        _refused(client.get("/api/v1/people", headers={"Host": "other.lan"}), "foreign_host")
        _refused(
            client.post("/api/v1/people", data={"name": "x"}, headers={"Origin": EVIL}), "foreign_origin"
        )
