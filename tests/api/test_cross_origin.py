"""Cross-origin calls (``FACEFORGE_CORS_ORIGINS``): a named origin's page may call the API and read its
answers, refusals included, and its preflights are answered without a key; any other origin gets no
permission; the setting refuses what is not an origin, and ``*`` without keys. (A real browser
importing the client from another origin: ``tests/web/test_browser_client.py``.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from faceforge.core.config import Settings, settings_error
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from tests.api.fixtures import (
    LOOPBACK_CLIENT,
    faceforge_command,
    faceforge_environment,
    photo_fields,
    service_settings,
)
from tests.conftest import LFW10

APP = "https://app.example.com"
OTHER = "https://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}


def _preflight(client: TestClient, origin: str) -> object:
    return client.options("/api/v1/identify", headers={"Origin": origin, **PREFLIGHT})


def test_a_named_origin_may_call_with_its_key_and_read_every_answer(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    origins = f"{APP}/, http://LOCALHOST:3000"
    named = service_settings(
        tmp_path, database_url, settings, admin_keys="admin", read_keys="reader", cors_origins=origins
    )
    with TestClient(create_app(named), client=LOOPBACK_CLIENT) as client:
        answer = client.options("/api/v1/identify", headers={"Origin": APP, **PREFLIGHT})
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
            other = client.options("/api/v1/identify", headers={"Origin": origin, **PREFLIGHT})
            assert "access-control-allow-origin" not in other.headers, origin
            assert other.status_code >= 400 and other.json()["error"]["code"], other.text
            read = client.get("/api/v1/people", headers={"Origin": origin, "X-API-Key": "reader"})
            assert "access-control-allow-origin" not in read.headers

    unnamed = service_settings(tmp_path, database_url, settings, admin_keys="admin")
    with TestClient(create_app(unnamed), client=LOOPBACK_CLIENT) as client:
        assert "access-control-allow-origin" not in _preflight(client, APP).headers  # type: ignore[attr-defined]


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
        assert client.get("/api/v1/people").json()["total"] == 1


def test_origins_are_kept_as_browsers_send_them() -> None:
    named = (
        "https://a.com:443, HTTP://LocalHost:3000/, https://bücher.de, http://[0:0::1]:8080, http://a.com:80"
    )
    assert Settings(cors_origins=named).cors_origin_set == {
        "https://a.com", "http://localhost:3000", "https://xn--bcher-kva.de", "http://[::1]:8080", "http://a.com",
    }  # fmt: skip


@pytest.mark.parametrize(
    "value",
    ["app.example.com", "https://app.example.com/path", "ftp://app.example.com", "https://user@app.example.com",
     "https://app.example.com:port", "https://app.example.com?x=1", "https://", "https://*.example.com",
     "https://app example.com", "http://app.example.com:0", "null"],
)  # fmt: skip
def test_the_setting_refuses_what_is_not_an_origin(value: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(cors_origins=value)
    message = settings_error(raised.value)
    assert message.startswith("FACEFORGE_CORS_ORIGINS: ") and "is not an origin" in message, message


def test_any_origin_needs_keys() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(cors_origins="*", admin_keys="", read_keys="")
    assert "needs API keys" in settings_error(raised.value)
    assert Settings(cors_origins="*", read_keys="reader").cors_origin_set == {"*"}


def test_a_wrong_setting_stops_the_cli_with_one_line(tmp_path: Path, settings: Settings) -> None:
    """It was a 53-line traceback from pydantic (exit 1) before."""
    cases = [  # variable, value, how the line starts, what it shows of the value
        ("FACEFORGE_CORS_ORIGINS", "https://app.example.com/app", "FACEFORGE_CORS_ORIGINS: ", "'https://app"),
        ("FACEFORGE_TARGET_UNKNOWN_REJECT", "2", "FACEFORGE_TARGET_UNKNOWN_REJECT: ", "(given '2')"),
        ("FACEFORGE_LIMITS__MAX_FILE_BYTES", "many", "FACEFORGE_LIMITS__MAX_FILE_BYTES: ", "'many'"),
        # A threshold above 1 was accepted, and nothing would ever have been detected.
        ("FACEFORGE_DETECTOR__THRESHOLDS", "[0.6, 0.7, 2]", "FACEFORGE_DETECTOR__THRESHOLDS: ", "2.0]"),
        # Not JSON: pydantic-settings' own error, a traceback that never named the variable.
        ("FACEFORGE_DETECTOR__THRESHOLDS", "high", "FACEFORGE_DETECTOR (or a FACEFORGE_DETECTOR__ ", "JSON"),
        # SQLAlchemy's errors at start-up, 136 lines; and the value may hold a password.
        ("FACEFORGE_DATABASE_URL", "nonsense://user:secret@db/x", "FACEFORGE_DATABASE_URL: ", "postgresql"),
    ]  # fmt: skip
    for variable, value, start, shown in cases:
        env = {**faceforge_environment(tmp_path / "home", settings), variable: value}
        done = subprocess.run(
            faceforge_command("serve", "--port", "1"), env=env, capture_output=True, text=True, timeout=120
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith("error: " + start) and shown in lines[0], lines[0]
        assert "secret" not in done.stderr
