"""Every rejection is a clear 4xx JSON and leaves no rows or files behind; API keys are enforced
before a body is read; every route declares who may call it."""

from __future__ import annotations

import asyncio
import io
from collections.abc import MutableMapping
from concurrent.futures import ThreadPoolExecutor
from json import dumps, loads
from pathlib import Path
from typing import Any

import httpx
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from PIL import Image

from faceforge.building.export import coreml_models
from faceforge.core.config import LimitSettings, Settings
from faceforge.core.dataset import image_files
from faceforge.serving.api.access import declared_access
from faceforge.serving.api.app import create_app
from faceforge.serving.services.people import too_large_file
from faceforge.storage import people_store
from tests.api.fixtures import (
    BOTH_DATABASES,
    LOOPBACK_CLIENT,
    LOOPBACK_URL,
    device_worker,
    local_client,
    photo_fields,
    service_settings,
    wait_until_trained,
)
from tests.conftest import FACES, LFW10
from tests.vision.test_decode import png_header_only

LEGACY = "/gorillas/face-recognition/api/v1.0"
HUGE = "99999999999999999999999"  # beyond any integer column
PUBLIC_PAGES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _nothing_stored(client: TestClient) -> None:
    assert client.get("/api/v1/people").json()["total"] == 0
    photos_dir = client.app.state.services.settings.files_dir / "photos"  # type: ignore[attr-defined]
    assert not photos_dir.exists() or list(photos_dir.iterdir()) == []


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code and body["message"], body
    return body


def test_registration_rejections(tmp_path: Path, database_url: str, settings: Settings) -> None:
    limits = LimitSettings(max_file_bytes=60_000, max_photos_per_request=3, max_name_length=20)
    app_settings = service_settings(tmp_path, database_url, settings, limits=limits)
    big = next(p for p in image_files(FACES / "deepface_tests") if p.stat().st_size > 60_000)
    small = image_files(LFW10 / "Colin_Powell")
    with local_client(create_app(app_settings)) as client:
        cases = [
            ({}, [], 400, "name_required"),  # missing and blank: one code per cause
            ({"name": "   "}, [], 400, "name_required"),
            ({"name": "x" * 21}, [], 400, "name_too_long"),
            ({"name": "Ann\nunknown"}, photo_fields(small[:1]), 400, "name_invalid"),  # splits labels.txt
            ({"name": " Unknown "}, photo_fields(small[:1]), 400, "reserved_name"),  # labels.txt's last
            ({"name": "Ann", "position": "cook\u2028chef"}, photo_fields(small[:1]), 400, "position_invalid"),
            ({"name": "ok"}, photo_fields(small[:4]), 413, "too_many_photos"),
            ({"name": "ok"}, photo_fields([small[0], big]), 413, "file_too_large"),
        ]
        for data, files, status, code in cases:
            _error(client.post("/api/v1/people", data=data, files=files or None), status, code)
        # In a unit a person reads, and saying that the good photo beside it was not stored either
        # (a tester read "larger than 15728640 bytes" and wondered about the rest).
        answer = client.post("/api/v1/people", data={"name": "ok"}, files=photo_fields([small[0], big]))
        assert answer.json()["error"]["message"] == (
            f"{big.name} is larger than the limit of 60,000 bytes per photo; no photo of this request "
            "was stored: send it smaller, or leave it out"
        )
        _nothing_stored(client)
        oversized = client.post(
            "/api/v1/people", data={"name": "ok"}, content=b"x" * 200, headers={"content-length": str(10**10)}
        )
        _error(oversized, 413, "request_too_large")
        _error(client.get("/no/such/path"), 404, "not_found")  # outside the API too, the same shape
        _error(client.get("/api/v1/people/12345"), 404, "not_found")
        not_ready = _error(client.get("/api/v1/models/current"), 409, "model_not_ready")
        assert not_ready["message"].startswith("model is not ready: no version yet"), not_ready  # and why
        legacy_missing = client.post(f"{LEGACY}/user/register", data={"position": "cook"})
        assert legacy_missing.json() == {
            "status": "failed",
            "error": "bad request",
            "message": "Name is required",
        }
        # A photo over the limit is 413 there too, in its shape (it said 400 "bad request").
        legacy_big = client.post(f"{LEGACY}/user/register", data={"name": "ok"}, files=photo_fields([big]))
        assert legacy_big.status_code == 413, legacy_big.text
        assert legacy_big.json()["status"] == "failed" and "larger than" in legacy_big.json()["message"]
        _nothing_stored(client)


def test_chunked_body_over_the_limit_is_413(tmp_path: Path, database_url: str, settings: Settings) -> None:
    limits = LimitSettings(max_request_bytes=64 * 1024)
    app_settings = service_settings(tmp_path, database_url, settings, limits=limits)
    photo = image_files(LFW10 / "Colin_Powell")[0].read_bytes()

    def chunks() -> Any:  # no Content-Length: the size is only known while reading
        boundary = b"--faceforge"
        yield boundary + b'\r\nContent-Disposition: form-data; name="name"\r\n\r\nColin\r\n'
        yield boundary + b'\r\nContent-Disposition: form-data; name="photos"; filename="a.jpg"\r\n'
        yield b"Content-Type: image/jpeg\r\n\r\n"
        for _ in range(10):
            yield photo
        yield b"\r\n" + boundary + b"--\r\n"

    with local_client(create_app(app_settings)) as client:
        response = client.post(
            "/api/v1/people",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=faceforge"},
        )
        _error(response, 413, "request_too_large")
        legacy = client.post(
            f"{LEGACY}/user/register",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=faceforge"},
        )
        assert legacy.status_code == 413 and legacy.json()["status"] == "failed"
        _nothing_stored(client)


def _multipart(fields: dict[str, str], files: list[tuple[str, Path]]) -> tuple[bytes, str]:
    """A whole multipart body as httpx writes it, and its content type."""
    request = httpx.Request(
        "POST",
        LOOPBACK_URL,
        data=fields,
        files=[(field, (path.name, path.read_bytes(), "image/jpeg")) for field, path in files],
    )
    return request.read(), request.headers["content-type"]


def _sent_in_reads(
    client: TestClient, path: str, content_type: str, reads: list[bytes]
) -> tuple[int, dict[str, Any]]:
    """POST ``reads`` to the test client's app as a server would hand them over, one ``receive`` each,
    in the event loop its lifespan runs in; the answer's status and JSON body."""
    messages: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": read, "more_body": number < len(reads) - 1}
        for number, read in enumerate(reads)
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", content_type.encode()),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": LOOPBACK_CLIENT,
        "server": ("127.0.0.1", 8000),
    }
    assert client.portal is not None  # inside the client's `with`: its lifespan has started
    client.portal.call(client.app, scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), loads(body)


def test_a_multipart_body_cut_short_stores_nothing(client: TestClient) -> None:
    """Starlette's parser drops an unclosed last part without a word: two photos cut in the second
    registered a person with one, answered 201 (a new user's trial). Every API now refuses the body,
    in its own shape, and stores nothing of it."""
    colin = image_files(LFW10 / "Colin_Powell")[:2]
    body, content_type = _multipart({"name": "Colin"}, [("photos", path) for path in colin])
    cut = {"content": body[:-2000], "headers": {"content-type": content_type}}
    said = "the multipart body ends before its closing boundary"
    assert said in _error(client.post("/api/v1/people", **cut), 400, "incomplete_body")["message"]
    legacy = client.post(f"{LEGACY}/user/register", **cut)
    assert legacy.status_code == 400 and legacy.json()["status"] == "failed", legacy.text
    deepstack_body, deepstack_type = _multipart({"userid": "Colin"}, [("image", colin[0])])
    deepstack = client.post(
        "/v1/vision/face/register",
        content=deepstack_body[:-10],  # only the closing delimiter's end is missing
        headers={"content-type": deepstack_type},
    )
    assert deepstack.status_code == 400 and deepstack.json()["success"] is False, deepstack.text
    assert said in deepstack.json()["error"]
    face_body, face_type = _multipart({}, [("file", colin[0])])
    compreface = client.post(
        "/api/v1/recognition/faces",
        params={"subject": "Colin"},
        content=face_body[:-3000],
        headers={"content-type": face_type},
    )
    assert compreface.status_code == 400 and said in compreface.json()["message"], compreface.text
    _nothing_stored(client)

    # Whole, in reads that split the closing delimiter, then an empty last read (as uvicorn ends a
    # chunked body): accepted, both photos. Sent to the app itself, as a server hands it reads (the
    # test client joins a body's pieces into one).
    pieces = [body[:-20], *(body[start : start + 3] for start in range(len(body) - 20, len(body), 3)), b""]
    status, answer = _sent_in_reads(client, "/api/v1/people", content_type, pieces)
    assert status == 201 and answer["photo_count"] == 2, answer
    status, answer = _sent_in_reads(client, "/api/v1/people", content_type, [body[:-12], body[-12:-3], b""])
    assert status == 400 and answer["error"]["code"] == "incomplete_body", answer
    # No body at all is no cut upload: the route's own answer.
    _error(client.post("/api/v1/people", headers={"content-type": content_type}), 400, "name_required")


def test_photos_sent_and_none_accepted_store_nothing(client: TestClient) -> None:
    refused = [
        ("photos", ("empty.jpg", b"", "image/jpeg")),
        ("photos", ("dog.jpg", (FACES / "negatives" / "dlib_dog.jpg").read_bytes(), "image/jpeg")),
    ]
    body = _error(
        client.post("/api/v1/people", data={"name": "Nobody"}, files=refused), 422, "photos_rejected"
    )
    assert [(p["filename"], p["verdict"], p["reasons"]) for p in body["photos"]] == [
        ("empty.jpg", "rejected", ["empty_file"]),
        ("dog.jpg", "rejected", ["no_face"]),
    ]
    _nothing_stored(client)
    legacy = client.post(f"{LEGACY}/user/register", data={"name": "Nobody"}, files=refused)
    assert legacy.status_code == 400 and legacy.json()["status"] == "failed"
    assert [r["reasons"] for r in legacy.json()["reasons"]] == [["empty_file"], ["no_face"]]
    _nothing_stored(client)

    # A person without photos is fine; adding only refused photos changes nothing.
    person = client.post("/api/v1/people", data={"name": "Later"})
    assert person.status_code == 201 and person.json()["training"] is None
    added = client.post(f"/api/v1/people/{person.json()['id']}/photos", files=refused)
    _error(added, 422, "photos_rejected")
    assert client.get(f"/api/v1/people/{person.json()['id']}").json()["photo_count"] == 0
    assert client.get("/api/v1/training").json()["requested"] == 0


def test_files_under_another_field_are_refused_not_dropped(client: TestClient) -> None:
    """``photo`` for ``photos`` registered a person with no photo and said nothing (a new-user tester
    did it: identify's field is ``photo``); a second photo to identify was ignored."""
    face = image_files(LFW10 / "Tony_Blair")[0].read_bytes()
    misnamed = [("photo", ("face.jpg", face, "image/jpeg"))]
    body = _error(
        client.post("/api/v1/people", data={"name": "Misnamed"}, files=misnamed), 400, "unexpected_file_field"
    )
    assert "'photo'" in body["message"] and "'photos'" in body["message"]
    _nothing_stored(client)
    person = client.post("/api/v1/people", data={"name": "Later"}).json()
    _error(client.post(f"/api/v1/people/{person['id']}/photos", files=misnamed), 400, "unexpected_file_field")
    _error(client.post("/api/v1/strangers", files=misnamed), 400, "unexpected_file_field")
    twice = [("photo", ("a.jpg", face, "image/jpeg")), ("photo", ("b.jpg", face, "image/jpeg"))]
    _error(client.post("/api/v1/identify", files=twice), 400, "too_many_files")
    wrong = [("photos", ("a.jpg", face, "image/jpeg"))]
    _error(client.post("/api/v1/identify", files=wrong), 400, "unexpected_file_field")
    assert client.get(f"/api/v1/people/{person['id']}").json()["photo_count"] == 0
    assert client.get("/api/v1/training").json()["requested"] == 0


def test_a_photo_sent_as_text_is_refused_in_our_words(client: TestClient) -> None:
    """``curl -F photo=face.jpg`` (no ``@``) sends the file's name as text: the answer said "Expected
    UploadFile, received: <class 'str'>" (a new-user tester's finding)."""
    as_text = [("photo", (None, "face.jpg"))]  # a multipart part without a filename
    body = _error(client.post("/api/v1/identify", files=as_text), 400, "not_a_file")
    assert "'photo'" in body["message"] and "UploadFile" not in body["message"]
    _error(client.post("/api/v1/identify", data={"photo": "face.jpg"}), 400, "not_a_file")  # a plain form
    refused = client.post("/api/v1/people", data={"name": "Text"}, files=[("photos", (None, "face.jpg"))])
    assert "'photos'" in _error(refused, 400, "not_a_file")["message"]
    _error(client.post("/api/v1/strangers", files=[("photos", (None, "face.jpg"))]), 400, "not_a_file")
    _nothing_stored(client)
    # The compatible APIs, in their own shapes: the same pydantic words reached their clients.
    face = image_files(LFW10 / "Colin_Powell")[0].read_bytes()
    pair = [("source_image", ("a.jpg", face, "image/jpeg")), ("target_image", (None, "face.jpg"))]
    verified = client.post("/api/v1/verification/verify", files=pair)
    assert verified.status_code == 400 and verified.json()["code"] == 26, verified.text
    assert "'target_image' was sent as text" in verified.json()["message"]
    matched = client.post(
        "/v1/vision/face/match", files=[("image1", ("a.jpg", face)), ("image2", (None, "b.jpg"))]
    )
    assert matched.status_code == 400 and "'image2' was sent as text" in matched.json()["error"], matched.text
    assert "UploadFile" not in verified.text + matched.text
    # A pair where one image has no face says which (CompreFace's words alone left a tester guessing).
    cat = sorted((FACES / "negatives").iterdir())[0].read_bytes()
    for source, target, which in ((face, cat, "target_image"), (cat, face, "source_image")):
        files = [
            ("source_image", ("a.jpg", source, "image/jpeg")),
            ("target_image", ("b.jpg", target, "image/jpeg")),
        ]
        no_face = client.post("/api/v1/verification/verify", files=files)
        assert no_face.status_code == 400 and no_face.json() == {
            "message": f"No face is found in the given image ({which})",
            "code": 28,
        }, no_face.text


def test_bad_photos_get_verdicts_not_errors(client: TestClient) -> None:
    files = [
        ("photos", ("empty.jpg", b"", "image/jpeg")),
        ("photos", ("text.jpg", b"hello", "image/jpeg")),
        ("photos", ("dog.jpg", (FACES / "negatives" / "dlib_dog.jpg").read_bytes(), "image/jpeg")),
        ("photos", ("group.jpg", (FACES / "multi" / "dlib_bald_guys.jpg").read_bytes(), "image/jpeg")),
        ("photos", ("ok.jpg", image_files(LFW10 / "Colin_Powell")[0].read_bytes(), "image/jpeg")),
        ("photos", ("ok2.jpg", image_files(LFW10 / "Colin_Powell")[1].read_bytes(), "image/jpeg")),
        (
            "photos",
            ("with-blair.jpg", _side_by_side(LFW10 / "Tony_Blair", LFW10 / "Colin_Powell"), "image/jpeg"),
        ),
    ]
    response = client.post("/api/v1/people", data={"name": "Colin"}, files=files)
    assert response.status_code == 201
    body = response.json()
    assert [(p["verdict"], p["reasons"]) for p in body["photos"]] == [
        ("rejected", ["empty_file"]),
        ("rejected", ["not_an_image"]),
        ("rejected", ["no_face"]),
        ("rejected", ["multiple_faces"]),  # strangers: none of them matches Colin's other photos
        ("accepted", []),
        ("accepted", []),
        ("accepted", []),  # two people; Colin's other photos say which face is his
    ]
    resolved = body["photos"][-1]
    assert "several faces" in resolved["message"] and resolved["box"]["x"] > 250  # the right half
    assert body["photo_count"] == 3


def _side_by_side(left: Path, right: Path) -> bytes:
    first, second = (Image.open(image_files(folder)[4]).convert("RGB") for folder in (left, right))
    both = Image.new("RGB", (first.width + second.width, first.height))
    both.paste(first, (0, 0))
    both.paste(second, (first.width, 0))
    buffer = io.BytesIO()
    both.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_numbers_beyond_any_id_are_404_or_400_json(client: TestClient) -> None:
    photo = image_files(LFW10 / "Colin_Powell")[0].read_bytes()
    for method, path in [
        ("GET", f"/api/v1/people/{HUGE}"),
        ("PATCH", f"/api/v1/people/{HUGE}"),
        ("DELETE", f"/api/v1/people/{HUGE}"),
        ("GET", f"/api/v1/people/{HUGE}/photos"),
        ("DELETE", f"/api/v1/people/1/photos/{HUGE}"),
        ("GET", f"/api/v1/models/{HUGE}"),
        ("POST", f"/api/v1/models/{HUGE}/activate"),
        ("GET", f"/api/v1/models/{HUGE}/files/model.onnx"),
        ("GET", "/api/v1/models/2147483648"),  # one past PostgreSQL's integer
        ("GET", "/api/v1/people/abc"),
    ]:
        _error(
            client.request(method, path, json={"name": "x"} if method == "PATCH" else None), 404, "not_found"
        )
    _error(client.get("/api/v1/people", params={"offset": HUGE}), 400, "invalid_request")
    identify = client.post("/api/v1/identify", files={"photo": ("a.jpg", photo)}, data={"version": HUGE})
    _error(identify, 400, "invalid_request")


def test_vision_work_is_bounded_with_503(tmp_path: Path, database_url: str, settings: Settings) -> None:
    limits = LimitSettings(vision_concurrency=1, vision_queue=0)
    app_settings = service_settings(tmp_path, database_url, settings, limits=limits)
    photo = image_files(LFW10 / "Colin_Powell")[0]
    with local_client(create_app(app_settings)) as client:
        gate = client.app.state.services.people.gate  # type: ignore[attr-defined]
        with gate.slot():  # another request is analysing its photos
            busy = client.post("/api/v1/people", data={"name": "Colin"}, files=photo_fields([photo]))
            _error(busy, 503, "busy")
            assert int(busy.headers["retry-after"]) >= 1
            _nothing_stored(client)
        assert (
            client.post("/api/v1/people", data={"name": "Colin"}, files=photo_fields([photo])).status_code
            == 201
        )


def test_api_keys(tmp_path: Path, database_url: str, settings: Settings) -> None:
    app_settings = service_settings(
        tmp_path, database_url, settings, admin_keys="admin-1, admin-2", read_keys="reader, clé de lecture"
    )
    photo = image_files(LFW10 / "Gerhard_Schroeder")[0]
    with TestClient(create_app(app_settings)) as client:  # any client address: keys are set
        _error(client.get("/api/v1/people"), 401, "unauthorized")
        _error(client.get("/api/v1/people", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        assert client.get("/api/v1/people", headers={"X-API-Key": "reader"}).status_code == 200
        # A key with a space and an accent, as curl sends it (UTF-8: it was a 401) and as a browser does
        # (Latin-1); the same key in other bytes is no key.
        for sent in ("clé de lecture".encode(), "clé de lecture".encode("latin-1")):
            assert client.get("/api/v1/people", headers={"X-API-Key": sent}).status_code == 200, sent
        _error(client.get("/api/v1/people", headers={"X-API-Key": "cle de lecture"}), 401, "unauthorized")
        denied = client.post("/api/v1/people", data={"name": "x"}, headers={"X-API-Key": "reader"})
        _error(denied, 403, "forbidden")
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
        training = client.get("/api/v1/training", headers={"X-API-Key": "reader"})
        assert training.status_code == 200 and training.json()["requested"] == 1
        assert client.get("/api/v1/people", headers={"X-API-Key": "reader"}).json()["total"] == 1
        # A read of faces is refused as such, not as a write (it said "writing needs an admin key").
        person = created.json()["id"]
        thumbnail = client.get(f"/api/v1/people/{person}/thumbnail", headers={"X-API-Key": "reader"})
        assert "photos" in _error(thumbnail, 403, "forbidden")["message"]
        # DeepStack's clients send their key as the form field api_key: the refusal names it.
        keyless = client.post("/v1/vision/face/list", data={})
        assert keyless.status_code == 401 and "api_key" in keyless.json()["error"], keyless.text
        unknown_user = client.post("/v1/vision/face/delete", data={"userid": "Nobody", "api_key": "admin-1"})
        assert unknown_user.json() == {"success": False, "error": "userid Nobody is not found"}


def test_a_wrong_key_is_refused_before_the_body_is_read(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    app = create_app(service_settings(tmp_path, database_url, settings, admin_keys="admin"))
    received: list[dict[str, Any]] = []
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        message = {"type": "http.request", "body": b"x" * 1_000_000, "more_body": True}
        received.append(message)
        return message

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    for key, status in ((b"wrong", 401), (None, 401)):
        received.clear()
        sent.clear()
        headers = [(b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", b"90000000")]
        if key is not None:
            headers.append((b"x-api-key", key))
        scope = {
            "type": "http", "method": "POST", "path": "/api/v1/people", "raw_path": b"/api/v1/people",
            "query_string": b"", "headers": headers, "client": ("10.0.0.9", 5000),
            "server": ("faceforge", 80), "scheme": "http", "http_version": "1.1", "root_path": "",
        }  # fmt: skip
        asyncio.run(app(scope, receive, send))
        assert sent[0]["status"] == status and received == []  # not one byte read


def test_without_keys_only_loopback_is_served(tmp_path: Path, database_url: str, settings: Settings) -> None:
    closed = create_app(service_settings(tmp_path, database_url, settings))
    with TestClient(closed, client=("192.168.1.20", 40000)) as remote:
        _error(remote.get("/api/v1/people"), 403, "keys_required")
        _error(remote.get("/openapi.json"), 403, "keys_required")
    with local_client(closed) as local:
        assert local.get("/api/v1/people").status_code == 200
    opened = create_app(service_settings(tmp_path, database_url, settings, open_network_without_keys=True))
    with TestClient(opened, client=("192.168.1.20", 40000), base_url="http://192.168.1.5:8000") as remote:
        assert remote.get("/api/v1/people").status_code == 200
        # An Origin that is no URL is a foreign one: urlsplit's ValueError was a 500 on every route.
        for path in ("/healthz", "/api/v1/people"):
            _error(remote.get(path, headers={"Origin": "http://["}), 403, "foreign_origin")


def test_every_route_declares_who_may_call_it() -> None:
    app = create_app(Settings(home=Path("/nonexistent")))  # routes only; nothing is started
    routes: list[APIRoute] = app.state.api_routes
    undeclared = [route.path for route in routes if declared_access(route) is None]
    assert undeclared == []
    # The list the access check consults is every operation the app serves.
    served = {
        (method.upper(), path) for path, operations in app.openapi()["paths"].items() for method in operations
    }
    listed = {  # the document names a parameter without its converter ({subject:path})
        (method, route.path_format)
        for route in routes
        if route.include_in_schema
        for method in route.methods or ()
    }
    assert served == listed and len(served) >= 16
    # Public: the dashboard's own files, the browser client's code and runtime and the /live page with
    # its service worker (no face and no model: the client asks the API for those with its key), its
    # question of what its key may do, the health checks, and DeepStack's routes, which carry their
    # key in the form and check it themselves once it is read (tests/compat: a wrong api_key is refused).
    public = {route.path for route in routes if declared_access(route) == "public"}
    deepstack = {path for path in public if path.startswith("/v1/vision/face")}
    assert len(deepstack) == 6
    pages = {
        "/",
        "/ui/{name}",
        "/live",
        "/live-sw.js",
        "/client/{name}",
        "/client/ort/{name}",
        "/client/ort/{tag}/{name}",
    }
    assert public - deepstack == pages | {"/api/v1/access", "/healthz", "/readyz"}
    # Only reads are open to read keys (recognising or detecting faces is a read: it changes nothing).
    recognising = ("/identify", "/recognition/recognize", "/verify", "/detection/detect")
    for route in routes:
        if declared_access(route) == "read":
            assert set(route.methods or ()) <= {"GET", "HEAD"} or route.path.endswith(recognising), route.path


def test_wrong_methods_name_the_allowed_ones(client: TestClient) -> None:
    people = client.put("/api/v1/people")
    _error(people, 405, "method_not_allowed")
    assert set(people.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    model = client.delete("/api/v1/models/1/files/model.onnx")
    assert model.status_code == 405 and set(model.headers["allow"].split(", ")) == {"GET", "HEAD"}
    legacy = client.get(f"{LEGACY}/user/register")
    assert legacy.status_code == 405 and legacy.headers["allow"] == "POST"
    assert legacy.json()["status"] == "failed"


def test_legacy_routes_keep_their_shape(
    tmp_path: Path, database_url: str, settings: Settings, device_backbones: Settings
) -> None:
    app_settings = service_settings(tmp_path, database_url, settings, worker=device_worker())
    with local_client(create_app(app_settings)) as client:
        not_ready = client.get(f"{LEGACY}/model/info")
        assert not_ready.status_code == 400
        assert not_ready.json() == {"status": "failed", "error": "model is not ready"}

        photos = image_files(LFW10 / "Donald_Rumsfeld")[:4]
        registered = client.post(
            f"{LEGACY}/user/register",
            data={"name": "Donald", "position": "SecDef"},
            files=photo_fields(photos),
        )
        assert registered.status_code == 200
        body = registered.json()
        # A photo under another field name registered someone without it, and said "success".
        misnamed = client.post(
            f"{LEGACY}/user/register",
            data={"name": "Nobody"},
            files={"photo": (photos[0].name, photos[0].read_bytes())},
        )
        assert misnamed.status_code == 400 and misnamed.json()["error"] == "unexpected file field", (
            misnamed.text
        )
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
            == f"{LOOPBACK_URL}/api/v1/models/{info['model']['version']}/files/model.mlmodel"
        )
        download = client.get(info["model"]["url"])
        assert download.status_code == 200
        spec = coreml_models.load_spec(download.content)
        assert list(spec.neuralNetworkClassifier.stringClassLabels.vector) == [
            f"Donald ({body['user']['id']})",
            "unknown",
        ]
        assert client.get(f"{LEGACY}/nothing/here").status_code == 404


def test_openapi_document_describes_errors_and_keys(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    document = client.get("/openapi.json").json()
    assert {"APIKeyHeader", "HTTPBearer"} <= set(document["components"]["securitySchemes"])
    assert "ErrorBody" in document["components"]["schemas"]
    register = document["paths"]["/api/v1/people"]["post"]
    assert {"400", "401", "403", "409", "413", "422", "503"} <= set(register["responses"])
    assert register["security"]
    assert {"get", "head"} <= set(document["paths"]["/api/v1/models/{version}/files/{name}"])
    person = document["paths"]["/api/v1/people/{person_id}"]["get"]
    (parameter,) = [p for p in person["parameters"] if p["name"] == "person_id"]
    assert parameter["schema"]["maximum"] == 2**31 - 1
    # Every route of ours may answer a fault of ours or a locked database (the strangers' did not say).
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/v1/") and not path.startswith("/api/v1/recognition"):
                assert {"500", "503"} <= set(operation["responses"]), (method, path)


@BOTH_DATABASES
def test_a_racing_external_id_is_always_409(client: TestClient) -> None:
    def register(index: int) -> int:
        response = client.post("/api/v1/people", data={"name": f"twin {index}", "external_id": "emp-42"})
        return int(response.status_code)

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(register, range(8)))
    assert statuses == [201] + [409] * 7
    assert client.get("/api/v1/people").json()["total"] == 1


def test_a_body_that_is_not_json_says_so(client: TestClient) -> None:
    """FastAPI's own words were "13: JSON decode error": no word of what was wrong."""
    answer = client.patch(
        "/api/v1/people/1", content=b'{"name": "x",}', headers={"content-type": "application/json"}
    )
    message = _error(answer, 400, "invalid_request")["message"]
    assert message.startswith("the body is not valid JSON: ") and "(at character 13)" in message, message
    assert "decode error" not in message


def test_a_query_parameter_given_twice_is_refused_in_each_apis_shape(client: TestClient) -> None:
    """FastAPI took the last value: ``?limit=5&limit=500`` answered with 500 rows."""
    twice = client.get("/api/v1/people?limit=5&offset=0&limit=500")
    message = _error(twice, 400, "invalid_request")["message"]
    assert message.startswith("limit: given more than once"), message
    assert client.get("/api/v1/people?limit=5&offset=0").status_code == 200  # once each is fine
    compreface = client.get("/api/v1/recognition/faces?page=0&page=1")
    assert compreface.status_code == 400 and "page: given more than once" in compreface.json()["message"]
    # CompreFace's face_plugins may repeat: its server joins the values, as clients that build it
    # from a list expect.
    colin = image_files(LFW10 / "Colin_Powell")
    pair = {
        name: (f"{name}.jpg", path.read_bytes(), "image/jpeg")
        for name, path in zip(("source_image", "target_image"), colin, strict=False)
    }
    verified = client.post("/api/v1/verification/verify?face_plugins=age&face_plugins=landmarks", files=pair)
    assert verified.status_code == 200, verified.text
    assert len(verified.json()["result"][0]["source_image_face"]["landmarks"]) == 5
    # The dashboard's page ignores its query: a link carrying a parameter twice still opens.
    assert client.get("/?utm_source=a&utm_source=b").status_code == 200


def test_a_form_field_given_twice_is_refused_in_each_apis_shape(client: TestClient) -> None:
    """FastAPI took the last value: ``-F threshold=0.99 -F threshold=0.1`` identified at 0.1, and a
    DeepStack match at ``min_confidence`` twice used the last (a new user's trial)."""
    photo = image_files(LFW10 / "Colin_Powell")[0]
    upload = {"photo": (photo.name, photo.read_bytes(), "image/jpeg")}
    twice = client.post("/api/v1/identify", data={"threshold": ["0.99", "0.1"]}, files=upload)
    message = _error(twice, 400, "invalid_request")["message"]
    assert message.startswith("threshold: given more than once in the form"), message
    assert client.post("/api/v1/identify", data={"threshold": "0.99"}, files=upload).status_code in (200, 409)
    named_twice = client.post(
        "/api/v1/people",
        data={"name": ["Colin Powell", "Tony Blair"]},
        files={"photos": (photo.name, photo.read_bytes(), "image/jpeg")},
    )
    assert "name: given more than once" in _error(named_twice, 400, "invalid_request")["message"]
    _nothing_stored(client)
    deepstack = client.post(
        "/v1/vision/face/recognize",
        data={"min_confidence": ["0.9", "0.1"]},
        files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
    )
    assert deepstack.status_code == 400, deepstack.text
    body = deepstack.json()
    assert body["success"] is False and "min_confidence: given more than once" in body["error"], body


def test_an_image_too_large_for_compreface_add_face_is_413(client: TestClient) -> None:
    """CompreFace's add-face answered 400 where identify (ours and CompreFace's) answers 413."""
    bomb = ("bomb.png", png_header_only(60_000, 60_000), "image/png")
    added = client.post("/api/v1/recognition/faces", params={"subject": "Nobody"}, files={"file": bomb})
    assert added.status_code == 413 and "pixels" in added.json()["message"], added.text
    _nothing_stored(client)


def test_deepstack_routes_refuse_in_deepstacks_own_words(client: TestClient) -> None:
    """DeepStack's clients met CompreFace's words ("No face is found in the given image") and a 422
    where DeepStack answers 400 "no face detected" (register), "no face found" (match) and
    "invalid image"."""
    cat = sorted((FACES / "negatives").iterdir())[0]
    face = image_files(LFW10 / "Colin_Powell")[0]

    def refused(path: str, files: dict[str, Any], data: dict[str, str] | None = None) -> tuple[int, Any]:
        response = client.post(f"/v1/vision/face/{path}", files=files, data=data or {})
        return response.status_code, response.json()

    def said(message: str) -> tuple[int, Any]:
        return 400, {"success": False, "error": message}

    not_a_photo = ("notes.jpg", b"not a photo at all", "image/jpeg")
    cat_photo = ("cat.jpg", cat.read_bytes(), "image/jpeg")
    assert refused("register", {"image": cat_photo}, {"userid": "Cat"}) == said("no face detected")
    assert refused("register", {"image": not_a_photo}, {"userid": "Notes"}) == said("invalid image")
    pair = {"image1": ("a.jpg", face.read_bytes(), "image/jpeg"), "image2": cat_photo}
    assert refused("match", pair) == said("no face found in image2")  # which of the two (a tester's)
    assert refused("match", pair | {"image2": not_a_photo}) == said("invalid image")
    # Several images and one refused: none is added (the answer cannot say which were); registered
    # with "face added", the face was stored and the cat was dropped without a word.
    assert refused("register", pair, {"userid": "Colin"}) == said(
        "no face detected: cat.jpg; no image was added"
    )
    assert refused("register", pair | {"image2": not_a_photo}, {"userid": "Colin"}) == said(
        "invalid image: notes.jpg; no image was added"
    )
    assert refused("register", pair | {"image3": not_a_photo}, {"userid": "Colin"}) == said(
        "no face detected: cat.jpg; invalid image: notes.jpg; no image was added"
    )
    # A cause DeepStack has no words for is said in ours, beside its words for the others (with it,
    # the whole answer fell back to ours, naming every photo, a good one included).
    group = ("group.jpg", (FACES / "multi" / "deepface_selfie-many-people.jpg").read_bytes(), "image/jpeg")
    status, answer = refused("register", pair | {"image3": group}, {"userid": "Colin"})
    assert status == 400 and answer["error"].startswith("no face detected: cat.jpg; several faces"), answer
    assert answer["error"].endswith(": group.jpg; no image was added") and "a.jpg" not in answer["error"]
    # Alone, such an image was a 422 in the people API's words ("no photo was accepted (group.jpg:
    # ...)"), and an image too large a 422 where recognize answers 413 (a tester's).
    status, answer = refused("register", {"image": group}, {"userid": "Colin"})
    assert status == 400 and answer["error"].startswith("several faces"), answer
    bomb = ("bomb.png", png_header_only(60_000, 60_000), "image/png")
    for files in ({"image": bomb}, {"image1": bomb, "image2": bomb}):
        status, answer = refused("register", files, {"userid": "Colin"})
        assert status == 413 and "pixels" in answer["error"] and answer["success"] is False, answer
    status, answer = refused("register", {"image1": bomb, "image2": cat_photo}, {"userid": "Colin"})
    assert status == 400 and answer["error"].endswith("no image was added"), answer
    _nothing_stored(client)  # nor their files
    # A photo the person already has is no refusal: registering it again with a new one adds that.
    second = ("b.jpg", image_files(LFW10 / "Colin_Powell")[1].read_bytes(), "image/jpeg")
    # Nor is registering the same image again, as a home-automation "teach" does (it was a 422).
    # Said as it is: nothing added when every image is one the person has ("face added", a tester's).
    already = "face already registered: nothing was added"
    for files, message in (
        ({"image1": pair["image1"]}, "face added"),
        ({"image1": pair["image1"], "image2": second}, "face added"),
        ({"image": second}, already),
    ):
        answer = client.post("/v1/vision/face/register", files=files, data={"userid": "Colin"})
        assert answer.json() == {"success": True, "message": message}, answer.text
    assert [p["photo_count"] for p in client.get("/api/v1/people").json()["items"]] == [2]
    # One it has and one refused: the refused one is named, and nothing is added.
    third = ("c.jpg", image_files(LFW10 / "Colin_Powell")[2].read_bytes(), "image/jpeg")
    assert refused("register", pair | {"image3": third}, {"userid": "Colin"}) == said(
        "no face detected: cat.jpg; no image was added"
    )
    assert [p["photo_count"] for p in client.get("/api/v1/people").json()["items"]] == [2]
    # "unknown" is recognize's word for a stranger: a person of that name was registered (a tester's)
    # and could never be told from one.
    for userid in ("unknown", " Unknown "):
        status, answer = refused("register", {"image": second}, {"userid": userid})
        assert status == 400 and "recognize answers for strangers" in answer["error"], answer
    # Detection (the route a tester found missing): the photo's faces, none, or not a photo.
    detected = client.post("/v1/vision/face", files={"image": group}).json()
    assert detected["success"] and len(detected["predictions"]) >= 3, detected
    for prediction in detected["predictions"]:
        assert set(prediction) == {"confidence", "x_min", "y_min", "x_max", "y_max"}
        assert 0 < prediction["confidence"] <= 1 and prediction["x_min"] < prediction["x_max"]
    # Between the two least sure faces: the answer's scores are rounded, the filter's are not.
    scores = sorted(p["confidence"] for p in detected["predictions"])
    assert scores[0] < scores[1], scores
    middle = (scores[0] + scores[1]) / 2
    surely = client.post(
        "/v1/vision/face", files={"image": group}, data={"min_confidence": str(middle)}
    ).json()
    assert [p for p in detected["predictions"] if p["confidence"] > middle] == surely["predictions"]
    assert client.post("/v1/vision/face", files={"image": cat_photo}).json() == {
        "success": True,
        "predictions": [],
    }
    not_read = client.post("/v1/vision/face", files={"image": not_a_photo})
    assert (not_read.status_code, not_read.json()) == said("invalid image")


@BOTH_DATABASES
def test_text_filters_with_control_characters_are_400_on_every_database(quiet_client: TestClient) -> None:
    """No name, external id or stranger source can hold a control character, so a filter with one can
    match nothing. SQLite cut the pattern at a NUL (``q=%00`` listed everyone) and PostgreSQL refuses
    NUL in text outright (a 500): both are told it in our shape instead."""
    person = quiet_client.post("/api/v1/people", data={"name": "Ada Lovelace"})
    assert person.status_code == 201, person.text
    for query in ("q=%00", "q=Ada%00", "q=%0A", "external_id=%00", "q=%7F"):
        _error(quiet_client.get(f"/api/v1/people?{query}"), 400, "invalid_request")
    _error(quiet_client.get("/api/v1/strangers?source=%00"), 400, "invalid_request")
    # The compatibility APIs look subjects up by name: one with a control character is nobody.
    for answer in (
        quiet_client.delete("/api/v1/recognition/subjects/%00"),
        quiet_client.get("/api/v1/recognition/faces?subject=%00"),
        quiet_client.post("/v1/vision/face/delete", data={"userid": "\x00"}),
    ):
        assert answer.status_code in (200, 400, 404), (answer.request.url, answer.text)
    assert quiet_client.get("/api/v1/people?q=ada").json()["total"] == 1  # ordinary text still filters
    assert quiet_client.get("/api/v1/people?q=Ada Lovelace").json()["total"] == 1


@BOTH_DATABASES
def test_the_name_filter_ignores_case_beyond_ascii_on_every_database(quiet_client: TestClient) -> None:
    """SQLite's own lower() folds ASCII letters only: "Émile" was not found by the very text stored."""
    for name in ("Émile Zola", "ÖZIL Mesut", "Ada Lovelace"):
        assert quiet_client.post("/api/v1/people", data={"name": name}).status_code == 201
    for query, names in (
        ("Émile", ["Émile Zola"]),
        ("émile", ["Émile Zola"]),
        ("ÉMILE", ["Émile Zola"]),
        ("özil", ["ÖZIL Mesut"]),
        ("E", ["Émile Zola", "ÖZIL Mesut", "Ada Lovelace"]),  # é is not e: no accent folding
    ):
        listed = quiet_client.get("/api/v1/people", params={"q": query}).json()
        assert [person["name"] for person in listed["items"]] == names, (query, listed)


@BOTH_DATABASES
def test_text_with_a_lone_surrogate_is_400_on_every_database(quiet_client: TestClient) -> None:
    """JSON may escape half of a UTF-16 pair (``"\\ud800"``), which Python decodes to a lone surrogate
    that no database can store (UTF-8 has no encoding for one): the store's UnicodeEncodeError was a 500."""
    person = quiet_client.post("/api/v1/people", data={"name": "Ada Lovelace"})
    assert person.status_code == 201, person.text
    path = f"/api/v1/people/{person.json()['id']}"
    json = {"Content-Type": "application/json"}
    for field in ("name", "position", "external_id"):
        body = dumps({field: "Ada \ud800"})  # ensure_ascii: the surrogate escaped, as JSON encoders do
        _error(quiet_client.patch(path, content=body, headers=json), 400, f"{field}_invalid")
    for answer in (
        quiet_client.post("/api/v1/recognition/subjects", content='{"subject": "\\udfff"}', headers=json),
        quiet_client.put(
            "/api/v1/recognition/subjects/Ada Lovelace", content='{"subject": "x\\ud800"}', headers=json
        ),
    ):
        assert answer.status_code == 400, (answer.request.url, answer.text)
        assert "surrogate" in answer.json()["message"]
    assert quiet_client.get(path).json()["name"] == "Ada Lovelace"
    assert quiet_client.get("/api/v1/recognition/subjects").json()["subjects"] == ["Ada Lovelace"]


@BOTH_DATABASES
def test_a_longer_text_limit_never_outgrows_the_columns(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    """``MAX_NAME_LENGTH`` may be raised, but external ids and sources are stored in 200 characters:
    PostgreSQL refused a longer one (a DataError, answered 500) where it should be the client's 400."""
    limits = LimitSettings(max_name_length=300)
    app_settings = service_settings(tmp_path, database_url, settings, limits=limits)
    with local_client(create_app(app_settings)) as client:
        long = client.post("/api/v1/people", data={"name": "N" * 300, "position": "p" * 300})
        assert long.status_code == 201, long.text
        refused = _error(
            client.post("/api/v1/people", data={"name": "Ann", "external_id": "e" * 201}),
            400,
            "external_id_too_long",
        )
        assert "200" in refused["message"]
        assert (
            client.post("/api/v1/people", data={"name": "Ann", "external_id": "e" * 200}).status_code == 201
        )
        _error(client.post("/api/v1/people", data={"name": "N" * 301}), 400, "name_too_long")


def test_a_body_that_is_not_a_form_is_415_where_photos_are_uploaded(quiet_client: TestClient) -> None:
    """JSON to the registration said "Name is required" (FastAPI read no form field of it), and a
    photo sent as the whole body to identify said "photo is required": neither said what to send."""
    photo = image_files(LFW10 / "Colin_Powell")[0].read_bytes()
    for path, body, content_type in (
        ("/api/v1/people", b'{"name": "J"}', "application/json"),
        ("/api/v1/identify", photo, "image/jpeg"),
        ("/api/v1/strangers", photo, "application/octet-stream"),
        ("/api/v1/people/1/photos", b"{}", "application/json; charset=utf-8"),
    ):
        refused = _error(
            quiet_client.post(path, content=body, headers={"Content-Type": content_type}),
            415,
            "unsupported_media_type",
        )
        assert (
            "multipart/form-data" in refused["message"] and content_type.split(";")[0] in refused["message"]
        )
    _nothing_stored(quiet_client)
    # Media types ignore case: a form so labelled is a form.
    cased = b'--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nCased\r\n--xyz--\r\n'
    headers = {"Content-Type": "Multipart/Form-Data; boundary=xyz"}
    assert quiet_client.post("/api/v1/people", content=cased, headers=headers).status_code == 201
    # A form without a file, or no body at all, is judged by its fields as before.
    _error(quiet_client.post("/api/v1/people"), 400, "name_required")
    assert quiet_client.post("/api/v1/people", data={"name": "J"}).status_code == 201


def test_missing_fields_are_named_as_spelt(quiet_client: TestClient) -> None:
    """A capitalised field name read "Target_image is required", "Other_id is required" and "Photos
    is required"; a body of the wrong type was blamed on an empty location (": Input should be...")."""
    person = quiet_client.post("/api/v1/people", data={"name": "Ada"}).json()["id"]
    photo = image_files(LFW10 / "Colin_Powell")[0]
    verify = quiet_client.post("/api/v1/verification/verify", files={"source_image": photo.open("rb")})
    assert verify.status_code == 400, verify.text
    assert verify.json()["message"].startswith("target_image is required: a file"), verify.text
    merge = _error(quiet_client.post(f"/api/v1/people/{person}/merge", json={}), 400, "other_id_required")
    assert merge["message"] == "other_id is required"
    stranger = _error(
        quiet_client.post("/api/v1/strangers", data={"note": "the mailman"}), 400, "photos_required"
    )
    assert stranger["message"].startswith("photos are required")
    assert (
        _error(quiet_client.post("/api/v1/people", data={}), 400, "name_required")["message"]
        == "Name is required"
    )
    listed = _error(quiet_client.patch(f"/api/v1/people/{person}", json=[1]), 400, "invalid_request")
    assert listed["message"].startswith("the body: "), listed


def test_a_compreface_subject_with_a_slash_can_be_renamed_and_deleted(quiet_client: TestClient) -> None:
    """ "AC/DC" was created, and its rename and delete (the name sent as AC%2FDC) answered 404: the
    server decodes %2F before routing, and the subject's segment took no "/" (a tester's)."""
    created = quiet_client.post("/api/v1/recognition/subjects", json={"subject": "AC/DC"})
    assert created.status_code == 201, created.text
    renamed = quiet_client.put("/api/v1/recognition/subjects/AC%2FDC", json={"subject": "AC/DC live"})
    assert renamed.json() == {"updated": True}, renamed.text
    assert quiet_client.get("/api/v1/recognition/subjects").json() == {"subjects": ["AC/DC live"]}
    deleted = quiet_client.delete("/api/v1/recognition/subjects/AC%2FDC%20live")
    assert deleted.json() == {"subject": "AC/DC live"}, deleted.text
    gone = quiet_client.delete("/api/v1/recognition/subjects/AC%2FDC")
    assert gone.status_code == 404 and gone.json()["message"] == "Subject AC/DC is not found", gone.text


def test_compreface_names_an_address_cannot_carry_and_empty_subjects_are_refused(
    quiet_client: TestClient,
) -> None:
    """A subject "." was created and could never be reached: clients send DELETE .../subjects/. as
    DELETE .../subjects, which deleted every subject. DELETE .../faces?subject= took the empty subject
    for none and deleted every photo of everyone. "unknown" is what the models and DeepStack answer
    for strangers (testers')."""
    photo = image_files(LFW10 / "Colin_Powell")[0]
    added = quiet_client.post(
        "/api/v1/recognition/faces",
        params={"subject": "Colin"},
        files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
    )
    assert added.status_code == 201, added.text
    for name in (".", "..", "Unknown"):
        refused = quiet_client.post("/api/v1/recognition/subjects", json={"subject": name})
        assert refused.status_code == 400 and refused.json()["code"] == 26, refused.text  # a validation
        renamed = quiet_client.put("/api/v1/recognition/subjects/Colin", json={"subject": name})
        assert renamed.status_code == 400, renamed.text
    for empty in ("", "  "):
        kept = quiet_client.delete("/api/v1/recognition/faces", params={"subject": empty})
        assert kept.status_code == 400 and kept.json()["code"] == 5, kept.text  # EMPTY_REQUIRED_FIELD
    assert quiet_client.get("/api/v1/recognition/faces").json()["total_elements"] == 1
    assert quiet_client.get("/api/v1/recognition/subjects").json() == {"subjects": ["Colin"]}


def test_a_person_named_unknown_from_before_stays_editable(quiet_client: TestClient) -> None:
    """A name reserved since is refused to new people only: sent again unchanged (the dashboard's form
    sends the name with every edit), it blocked editing the position (a reviewer's)."""
    sessions = quiet_client.app.state.services.people.sessions  # type: ignore[attr-defined]
    with sessions() as session, session.begin():
        person_id = people_store.create_person(session, name="Unknown", position=None, external_id=None)
    edited = quiet_client.patch(f"/api/v1/people/{person_id}", json={"name": "Unknown", "position": "cook"})
    assert edited.status_code == 200 and edited.json()["position"] == "cook", edited.text
    renamed = quiet_client.patch(f"/api/v1/people/{person_id}", json={"name": "UNKNOWN"})
    assert renamed.status_code == 400 and renamed.json()["error"]["code"] == "reserved_name", renamed.text
    photo = image_files(LFW10 / "Colin_Powell")[0]
    added = quiet_client.post(  # a CompreFace subject of that name from before still takes photos
        "/api/v1/recognition/faces",
        params={"subject": "Unknown"},
        files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
    )
    assert added.status_code == 201 and added.json()["subject"] == "Unknown", added.text


def test_the_size_limit_is_said_in_megabytes() -> None:
    """ "larger than 15728640 bytes" (a tester's); a large limit printed as "2.05e+03 MB" (a reviewer's)."""
    said = {size: too_large_file("a.jpg", size).message for size in (60_000, 15 * 2**20, 3 * 2**19, 2**31)}
    assert said == {
        60_000: "a.jpg is larger than the limit of 60,000 bytes per photo",
        15 * 2**20: "a.jpg is larger than the limit of 15 MB per photo",
        3 * 2**19: "a.jpg is larger than the limit of 1.5 MB per photo",
        2**31: "a.jpg is larger than the limit of 2,048 MB per photo",
    }


def test_a_group_photo_refused_says_whether_the_persons_photos_were_compared(
    quiet_client: TestClient,
) -> None:
    """ "no other photo of theirs tells which face is theirs" was said to a tester whose person had
    three photos; a group photo of two others is refused saying none of its faces matched them."""
    group = FACES / "multi" / "face_recognition_obama_and_biden.jpg"
    alone = quiet_client.post("/api/v1/people", data={"name": "First"}, files=photo_fields([group]))
    assert alone.status_code == 422, alone.text
    assert "no other photo of theirs tells which face is theirs" in alone.text
    names = {"George_W_Bush_0007", "George_W_Bush_0008", "George_W_Bush_0009"}
    bush = [path for path in image_files(LFW10 / "George_W_Bush") if path.stem in names]
    person = quiet_client.post("/api/v1/people", data={"name": "Bush"}, files=photo_fields(bush)).json()
    refused = quiet_client.post(f"/api/v1/people/{person['id']}/photos", files=photo_fields([group]))
    assert refused.status_code == 422, refused.text
    (verdict,) = refused.json()["error"]["photos"]
    assert verdict["reasons"] == ["multiple_faces"], verdict
    assert "none matches the person's other photos surely enough" in verdict["message"], verdict
