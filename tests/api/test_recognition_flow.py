"""Register people over HTTP, wait for the version, identify held-out photos, strangers and non-faces."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pytest import MonkeyPatch
from sqlalchemy import Engine, event

from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.serving.api.app import create_app
from faceforge.serving.services import models
from faceforge.serving.services.models import ModelService
from faceforge.storage import training_store
from faceforge.storage.version_store import VersionStore
from tests.api.fixtures import local_client, photo_fields, service_settings, wait_until_trained
from tests.conftest import FACES, LFW10

PEOPLE = ["Colin_Powell", "George_W_Bush", "Vladimir_Putin", "Jacques_Chirac"]


def _register_people(client: TestClient) -> dict[str, int]:
    ids = {}
    for folder in PEOPLE:
        photos = image_files(LFW10 / folder)[:5]
        response = client.post(
            "/api/v1/people",
            data={"name": folder.replace("_", " "), "position": "statesman", "external_id": f"lfw-{folder}"},
            files=photo_fields(photos),
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["name"] == folder.replace("_", " ") and body["position"] == "statesman"
        assert [p["verdict"] for p in body["photos"]] == ["accepted"] * 5
        assert body["training"] is not None
        ids[folder] = body["id"]
    return ids


def test_register_train_and_identify(client: TestClient) -> None:
    ids = _register_people(client)
    status = wait_until_trained(client)
    assert status["last_failure"] is None
    current = client.get("/api/v1/models/current").json()
    assert current["status"] == "ready" and current["is_current"]
    assert sorted(p["id"] for p in current["people"]) == sorted(ids.values())
    assert 0.3 < current["threshold"] < 0.9
    assert current["metrics"]["method"] == "leave-one-out over enrolled photos"
    assert current["metrics"]["top1"] >= 0.9

    for folder in PEOPLE:
        for held_out in image_files(LFW10 / folder)[5:8]:
            result = client.post(
                "/api/v1/identify", files={"photo": (held_out.name, held_out.read_bytes())}
            ).json()
            assert result["version"] == current["version"]
            match = result["faces"][0]["match"]
            assert match is not None and match["person_id"] == ids[folder], held_out.name
            assert 0 < match["confidence"] <= 1 and match["similarity"] >= current["threshold"]

    for stranger in image_files(FACES / "unknown_singles"):
        faces = client.post(
            "/api/v1/identify", files={"photo": (stranger.name, stranger.read_bytes())}
        ).json()["faces"]
        assert faces and faces[0]["match"] is None, stranger.name
        assert len(faces[0]["candidates"]) == 3

    # Readiness names the embedding graph that answered: the int8 one, or its 7-bit twin where this
    # CPU's fast 8-bit products saturate (the kernels' verdict), as the process chose at start-up.
    embedder = client.app.state.services.pipeline.embedder  # type: ignore[attr-defined]
    ready = client.get("/readyz").json()
    assert ready["embedder"] == embedder.precision == "int8"
    assert ready["embedder_graph"] == embedder.graph.name and embedder.graph.name.startswith(EMBEDDER_NAME)

    # The API process was given its setting for keeping cores awake (off in the test suite).
    awake = client.app.state.services.awake  # type: ignore[attr-defined]
    assert awake.off_because == "FACEFORGE_IDLE_POLL_MS is 0" and awake.poller_pids == []

    garbage = client.post("/api/v1/identify", files={"photo": ("x.jpg", b"garbage")})
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "not_an_image"

    for negative in image_files(FACES / "negatives"):
        result = client.post("/api/v1/identify", files={"photo": (negative.name, negative.read_bytes())})
        assert result.status_code == 200 and result.json()["faces"] == [], negative.name


def test_version_files_are_checksummed_and_cacheable(client: TestClient) -> None:
    ids = _register_people(client)
    wait_until_trained(client)
    current = client.get("/api/v1/models/current").json()
    version = current["version"]
    manifest_response = client.get(f"/api/v1/models/{version}/files/manifest.json")
    assert manifest_response.status_code == 200
    manifest = json.loads(manifest_response.content)
    assert manifest["crop"]["size"] == [160, 160] and manifest["labels"][0].endswith(")")
    # Both cuts resample alike, and say so: a tester's plain bilinear patch missed the checksum.
    assert (
        "area-averaging" in manifest["refiner"]["patch"]["resize"]
        and "area-averaging" in manifest["crop"]["resize"]
    )
    for name, entry in manifest["files"].items():
        response = client.get(f"/api/v1/models/{version}/files/{name}")
        assert response.status_code == 200
        assert (
            hashlib.sha256(response.content).hexdigest()
            == entry["sha256"]
            == current["files"][name]["sha256"]
        )
        assert int(response.headers["content-length"]) == entry["size"]
        etag = response.headers["etag"]
        assert etag == f'"{entry["sha256"]}"'
        assert (
            client.get(f"/api/v1/models/{version}/files/{name}", headers={"If-None-Match": etag}).status_code
            == 304
        )
        # Names and face templates: only the caller's own cache may keep them.
        assert response.headers["cache-control"].startswith("private")
        head = client.head(f"/api/v1/models/{version}/files/{name}")
        assert head.status_code == 200 and head.content == b""
        for header in ("etag", "content-length", "cache-control", "content-type"):
            assert head.headers[header] == response.headers[header]
        partial = client.get(f"/api/v1/models/{version}/files/{name}", headers={"Range": "bytes=0-9"})
        assert partial.status_code == 206 and partial.content == response.content[:10]
    head = f"/api/v1/models/{version}/files/head.onnx"
    _ranges_as_rfc_9110_asks(
        client, head, client.get(head).content, f'"{manifest["files"]["head.onnx"]["sha256"]}"'
    )
    # A stored photo: its ETag is the one Starlette gives it (size and time), sent only as the file goes.
    person = ids[PEOPLE[0]]
    photo = client.get(f"/api/v1/people/{person}/photos").json()[0]
    photo_url = f"/api/v1/people/{person}/photos/{photo['id']}/file"
    whole = client.get(photo_url)
    _ranges_as_rfc_9110_asks(client, photo_url, whole.content, whole.headers["etag"])
    modified = whole.headers["last-modified"]
    assert client.get(photo_url, headers={"Range": "bytes=0-9", "If-Range": modified}).status_code == 206
    labels = client.get(f"/api/v1/models/{version}/files/labels.txt").text.splitlines()
    assert labels[-1] == "unknown" and len(labels) == len(PEOPLE) + 1
    assert client.get(f"/api/v1/models/{version}/files/..%2Ffaceforge.db").status_code == 404
    assert client.get(f"/api/v1/models/{version}/files/nope.bin").json()["error"]["code"] == "not_found"


def _ranges_as_rfc_9110_asks(client: TestClient, url: str, whole: bytes, etag: str) -> None:
    """A phone resuming a download: a Range of another unit or of invalid syntax is ignored (the whole
    file), a set is served as far as it lies within the file, and only a set of which nothing lies
    within it is 416, in our JSON shape. Starlette answered the first with a plain-text 400 and refused
    a set with one range beyond the end."""
    size = len(whole)

    def get(range_: str, **more: str) -> Any:
        return client.get(url, headers={"Range": range_, **more})

    for ignored in (
        "bytes=abc",
        "items=0-3",
        "bytes=5-2",
        "bytes=",
        "bytes=,",
        "bytes=0-1;2",
        f"bytes={'9' * 5000}-",
    ):
        answer = get(ignored)
        assert answer.status_code == 200 and answer.content == whole, ignored[:20]
    headers_only = client.head(url, headers={"Range": "bytes=0-9"})
    assert headers_only.status_code == 206 and headers_only.content == b""
    assert headers_only.headers["content-range"] == f"bytes 0-9/{size}"
    two = get(f"bytes=0-1, {size - 2}-")
    assert two.status_code == 206 and two.headers["content-type"].startswith("multipart/byteranges")
    assert whole[:2] in two.content and whole[-2:] in two.content
    tail = get("bytes=-5")
    assert tail.status_code == 206 and tail.content == whole[-5:]
    assert tail.headers["content-range"] == f"bytes {size - 5}-{size - 1}/{size}"
    beyond = f"bytes=0-9, {size + 100}-"
    cut = get(beyond)
    assert cut.status_code == 206 and cut.content == whole[:10], beyond
    past_end = get(f"bytes=5-{size + 1000}")
    assert past_end.status_code == 206 and past_end.content == whole[5:]
    nothing = get(f"bytes={size}-")
    assert nothing.status_code == 416 and nothing.headers["content-range"] == f"bytes */{size}"
    assert nothing.json()["error"]["code"] == "range_not_satisfiable" and nothing.json()["error"]["message"]
    # If-Range naming another file: the client's part is stale, so the whole of this one; naming this
    # one (its ETag), the range. (The photo routes compared it before their ETag existed: always 200.)
    stale = get(f"bytes={size}-", **{"If-Range": '"0000"'})
    assert stale.status_code == 200 and stale.content == whole
    assert get("bytes=0-9", **{"If-Range": etag}).status_code == 206
    assert get("bytes=0-9", **{"If-Range": "W/" + etag}).status_code == 200  # weak: never matches


def _statements(engine: Engine, work: Callable[[], object]) -> list[str]:
    """The SQL statements ``engine`` ran during ``work``."""
    ran: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        ran.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        work()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return ran


def test_delete_person_removes_everything_and_retrains(client: TestClient, monkeypatch: MonkeyPatch) -> None:
    # Only the removals stamp may tell a process that its cached roster is stale (not the timed look).
    monkeypatch.setattr(models, "CURRENT_RECHECK_SECONDS", 3600.0)
    services = client.app.state.services  # type: ignore[attr-defined]
    ids = _register_people(client)
    wait_until_trained(client)
    before = client.get("/api/v1/models/current").json()["version"]
    photos_dir = services.settings.files_dir / "photos"
    assert len(list(photos_dir.iterdir())) == 5 * len(PEOPLE)

    probe = image_files(LFW10 / "Colin_Powell")[6]

    def identify() -> dict[str, Any]:
        answer: dict[str, Any] = client.post(
            "/api/v1/identify", files={"photo": (probe.name, probe.read_bytes())}
        ).json()
        return answer

    named = identify()
    assert named["faces"][0]["match"]["person_id"] == ids["Colin_Powell"]  # (what identify keeps of it)
    # While nobody is removed, identify checks its roster without the database (it cost 1 ms of each).
    # (The embedded training worker polls its own table meanwhile.)
    ran = _statements(services.engine, lambda: [identify() for _ in range(3)])
    assert [statement for statement in ran if "people" in statement] == [], ran
    # Another API process on the same home, with its own caches, that has already checked this roster.
    elsewhere = ModelService(services.settings, services.sessions)
    assert ids["Colin_Powell"] in [p["person_id"] for p in elsewhere.recognising(before).people]
    stamp = VersionStore(services.settings.models_dir).removals_stamp().file
    assert client.delete(f"/api/v1/people/{ids['Colin_Powell']}").status_code == 204
    # ... stops naming them at once: the file every process on the home reads has changed.
    assert VersionStore(services.settings.models_dir).removals_stamp().file != stamp
    assert ids["Colin_Powell"] not in [p["person_id"] for p in elsewhere.recognising(before).people]
    assert client.get(f"/api/v1/people/{ids['Colin_Powell']}").status_code == 404
    assert len(list(photos_dir.iterdir())) == 5 * (len(PEOPLE) - 1)
    wait_until_trained(client)
    after = client.get("/api/v1/models/current").json()
    assert after["version"] > before
    assert ids["Colin_Powell"] not in [p["id"] for p in after["people"]]
    for asked in ({}, {"version": str(before)}):  # the version after the deletion, and the one before
        face = client.post(
            "/api/v1/identify", data=asked, files={"photo": (probe.name, probe.read_bytes())}
        ).json()["faces"][0]
        assert face["match"] is None, asked
        assert ids["Colin_Powell"] not in [c["person_id"] for c in face["candidates"]], asked
    # The version before still names the others as it did.
    other = image_files(LFW10 / "Vladimir_Putin")[6]
    face = client.post(
        "/api/v1/identify", data={"version": str(before)}, files={"photo": (other.name, other.read_bytes())}
    ).json()["faces"][0]
    assert face["match"]["person_id"] == ids["Vladimir_Putin"]
    # Rolling back to it would name the deleted person again on every phone: refused, and said
    # beforehand, where versions are listed.
    assert client.get(f"/api/v1/models/{before}").json()["deleted_people"] == [ids["Colin_Powell"]]
    listed = {v["version"]: v for v in client.get("/api/v1/models").json()["items"]}
    assert listed[before]["deleted_people"] == [ids["Colin_Powell"]]
    assert listed[after["version"]]["deleted_people"] == []
    assert after["deleted_people"] is None  # /models/current is not checked
    refused = client.post(f"/api/v1/models/{before}/activate")
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "names_deleted_people" and str(ids["Colin_Powell"]) in error["message"]
    assert client.get("/api/v1/models/current").json()["version"] == after["version"]
    # Nor are its files served: they hold the deleted person's name and face template (a tester
    # downloaded head.safetensors and labels.txt from such a version with a read key).
    for name in ("labels.txt", "manifest.json", "head.onnx"):
        withheld = client.get(f"/api/v1/models/{before}/files/{name}")
        assert withheld.status_code == 410, withheld.text
        assert withheld.json()["error"]["code"] == "names_deleted_people"
    assert client.get(f"/api/v1/models/{after['version']}/files/labels.txt").status_code == 200
    # Nor does its listing name them any more (a reviewer's): the id stays, the name goes.
    for answer in (client.get(f"/api/v1/models/{before}"), client.get("/api/v1/models")):
        assert "Colin Powell" not in answer.text and "a deleted person" in answer.text, answer.text
    roster = {p["id"]: p["name"] for p in client.get(f"/api/v1/models/{before}").json()["people"]}
    assert (
        roster[ids["Colin_Powell"]] == "a deleted person"
        and roster[ids["Vladimir_Putin"]] == "Vladimir Putin"
    )


def test_photos_can_be_added_listed_and_deleted(client: TestClient) -> None:
    photos = image_files(LFW10 / "Tony_Blair")
    person = client.post("/api/v1/people", data={"name": "Tony Blair"}).json()
    assert person["photo_count"] == 0 and person["photos"] == [] and person["training"] is None
    added = client.post(f"/api/v1/people/{person['id']}/photos", files=photo_fields(photos[:3]))
    assert added.status_code == 201 and added.json()["photo_count"] == 3
    listed = client.get(f"/api/v1/people/{person['id']}/photos").json()
    assert [p["width"] for p in listed] == [250, 250, 250]
    assert client.delete(f"/api/v1/people/{person['id']}/photos/{listed[0]['id']}").status_code == 204
    assert client.get(f"/api/v1/people/{person['id']}").json()["photo_count"] == 2
    assert client.delete(f"/api/v1/people/{person['id']}/photos/{listed[0]['id']}").status_code == 404
    renamed = client.patch(f"/api/v1/people/{person['id']}", json={"position": "Prime Minister"}).json()
    assert renamed["position"] == "Prime Minister" and renamed["training"] is not None
    # Sent again as it is, a name or position changes no model: no version is asked for.
    for same in ({"position": "Prime Minister"}, {"name": "Tony Blair"}, {"name": " Tony Blair "}):
        again = client.patch(f"/api/v1/people/{person['id']}", json=same)
        assert again.status_code == 200 and again.json()["training"] is None, (same, again.json())
    page = client.get("/api/v1/people", params={"limit": 1}).json()
    assert page["total"] == 1 and page["items"][0]["id"] == person["id"]


def test_activate_rolls_back_and_forward(client: TestClient) -> None:
    first = image_files(LFW10 / "Hugo_Chavez")
    client.post("/api/v1/people", data={"name": "Hugo Chavez"}, files=photo_fields(first[:4]))
    wait_until_trained(client)
    client.post(
        "/api/v1/people",
        data={"name": "Ariel Sharon"},
        files=photo_fields(image_files(LFW10 / "Ariel_Sharon")[:4]),
    )
    wait_until_trained(client)
    versions = client.get("/api/v1/models").json()["items"]
    assert [v["version"] for v in versions][:2] == [2, 1]
    assert client.post("/api/v1/models/1/activate").json()["is_current"] is True
    assert client.get("/api/v1/models/current").json()["version"] == 1
    result = client.post("/api/v1/identify", files={"photo": ("p.jpg", first[5].read_bytes())}).json()
    assert result["version"] == 1
    explicit = client.post(
        "/api/v1/identify", files={"photo": ("p.jpg", first[5].read_bytes())}, data={"version": "2"}
    )
    assert explicit.json()["version"] == 2
    assert client.post("/api/v1/models/2/activate").status_code == 200
    assert client.post("/api/v1/models/99/activate").status_code == 404

    # A worker commits a new current version, then rewrites the pointer every process watches. In
    # between, a client that reads the training status and then asks for the current version gets
    # the one the status names, not this process's cached answer.
    assert client.get("/api/v1/models/current").json()["version"] == 2  # now cached here
    models = client.app.state.services.models  # type: ignore[attr-defined]
    with models.sessions.begin() as session:
        training_store.activate_version(session, version=1)  # committed; the pointer not rewritten yet
    assert client.get("/api/v1/training").json()["current_version"] == 1
    assert client.get("/api/v1/models/current").json()["version"] == 1


def test_a_duplicate_registration_is_reported_and_held_back(
    client: TestClient, monkeypatch: MonkeyPatch
) -> None:
    """Colin Powell registered again under another name: the version that would split his photos
    between two names is built but not made current, says why, and both people show the pair."""
    monkeypatch.setattr(models, "CURRENT_RECHECK_SECONDS", 3600.0)  # as in the deletion's test
    ids = _register_people(client)
    wait_until_trained(client)
    before = client.get("/api/v1/models/current").json()
    assert before["metrics"]["suspected_duplicates"] == []
    again = client.post(
        "/api/v1/people",
        data={"name": "Colin Powell, again"},
        files=photo_fields(image_files(LFW10 / "Colin_Powell")[5:9]),
    ).json()
    wait_until_trained(client)
    held = client.get(f"/api/v1/models/{before['version'] + 1}").json()
    assert held["status"] == "ready" and not held["is_current"]
    assert "Colin Powell and Colin Powell, again look like one person" in held["status_message"]
    assert held["metrics"]["accept_rate"] < before["metrics"]["accept_rate"]
    assert client.get("/api/v1/models/current").json()["version"] == before["version"]
    (suspect,) = held["metrics"]["suspected_duplicates"]
    assert sorted(suspect["people"]) == sorted([ids["Colin_Powell"], again["id"]])
    assert suspect["kind"] == "person" and suspect["similarity"] > 0.7
    assert abs(held["threshold"] - before["threshold"]) <= 0.01  # the pair does not move the threshold
    (seen_from_colin,) = client.get(f"/api/v1/people/{ids['Colin_Powell']}").json()["suspected_duplicates"]
    assert seen_from_colin["person_id"] == again["id"] and seen_from_colin["version"] == held["version"]
    (seen_from_again,) = client.get(f"/api/v1/people/{again['id']}").json()["suspected_duplicates"]
    assert seen_from_again["person_id"] == ids["Colin_Powell"]
    bush = client.get(f"/api/v1/people/{ids['George_W_Bush']}").json()
    assert bush["suspected_duplicates"] == []

    services = client.app.state.services  # type: ignore[attr-defined]
    elsewhere = ModelService(services.settings, services.sessions)  # another API process
    assert again["id"] in [p["person_id"] for p in elsewhere.recognising(held["version"]).people]
    stamp = VersionStore(services.settings.models_dir).removals_stamp().file
    merged = client.post(f"/api/v1/people/{ids['Colin_Powell']}/merge", json={"other_id": again["id"]})
    assert merged.status_code == 200, merged.text
    assert VersionStore(services.settings.models_dir).removals_stamp().file != stamp
    # The name merged away is no longer given, in that process too, before the next version is built.
    assert again["id"] not in [p["person_id"] for p in elsewhere.recognising(held["version"]).people]
    wait_until_trained(client)
    after = client.get("/api/v1/models/current").json()
    assert after["version"] > held["version"] and after["metrics"]["suspected_duplicates"] == []
    # The held version can no longer be made current: its advice ("Merge them, or make this version
    # current") is gone, with the name merged away, and so is its list of files it no longer serves.
    listed = {v["version"]: v for v in client.get("/api/v1/models").json()["items"]}[held["version"]]
    assert listed["status_message"] == models.HELD_BACK_THEN and listed["files"] == {}, listed
    assert "Colin Powell, again" not in json.dumps(listed), listed
    for folder in PEOPLE:  # everyone is recognised, Colin Powell as the one person he is again
        probe = image_files(LFW10 / folder)[9]
        match = client.post("/api/v1/identify", files={"photo": (probe.name, probe.read_bytes())}).json()[
            "faces"
        ][0]["match"]
        assert match is not None and match["person_id"] == ids[folder]


def _pointed_at(settings: Settings) -> int | None:
    """The version the home's ``models/CURRENT`` names (``VersionStore.mark_current``)."""
    number = (settings.models_dir / "CURRENT").read_text().split()[0]
    return None if number == "none" else int(number)


def test_a_version_below_the_floor_is_built_but_not_made_current(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    worker = WorkerSettings(
        poll_seconds=0.1, heartbeat_seconds=0.3, quiet_seconds=0.0, formats="onnx", min_known_accept=0.9
    )
    app_settings = service_settings(tmp_path, database_url, settings, worker=worker)
    with local_client(create_app(app_settings)) as client:
        ids = _register_people(client)
        wait_until_trained(client)
        good = client.get("/api/v1/models/current").json()
        assert good["metrics"]["accept_rate"] >= 0.9
        # One "person" whose photos are two other enrolled people: their held-out photos match those.
        mixed = image_files(LFW10 / "George_W_Bush")[5:8] + image_files(LFW10 / "Vladimir_Putin")[5:8]
        client.post("/api/v1/people", data={"name": "Mixed up"}, files=photo_fields(mixed))
        status = wait_until_trained(client)
        held = client.get(f"/api/v1/models/{good['version'] + 1}").json()
        assert held["status"] == "ready" and not held["is_current"]
        assert held["status_message"].startswith("held back") and held["metrics"]["accept_rate"] < 0.9
        assert client.get("/api/v1/models/current").json()["version"] == good["version"]
        assert status["current_version"] == good["version"]
        assert status["last_failure"]["version"] == held["version"]
        # The home's pointer names what the database holds current, never the version held back.
        assert _pointed_at(app_settings) == good["version"]
        assert client.post(f"/api/v1/models/{held['version']}/activate").status_code == 200  # by choice
        assert _pointed_at(app_settings) == held["version"]
        # A deletion is never held back: the version after it goes live below the floor too, or the
        # current one's files would go on naming the deleted person on every device.
        assert client.delete(f"/api/v1/people/{ids['Colin_Powell']}").status_code == 204
        wait_until_trained(client)
        after = client.get("/api/v1/models/current").json()
        assert after["version"] == held["version"] + 1 and after["metrics"]["accept_rate"] < 0.9
        assert ids["Colin_Powell"] not in [p["id"] for p in after["people"]]


def test_compreface_verification_times_each_stage(quiet_client: TestClient) -> None:
    """With ``status=true``, verification gave the whole request's time as ``calculator`` alone, where
    recognize gives the photos' detection and one face's share of the embedding."""
    source, target = image_files(LFW10 / "Colin_Powell")[:2]
    verified = quiet_client.post(
        "/api/v1/verification/verify",
        params={"status": "true"},
        files={"source_image": source.open("rb"), "target_image": target.open("rb")},
    )
    assert verified.status_code == 200, verified.text
    times = verified.json()["result"][0]["execution_time"]
    assert set(times) == {"detector", "calculator"} and min(times.values()) > 0, times
    uploaded = quiet_client.post(
        "/api/v1/recognition/faces", params={"subject": "Colin"}, files={"file": source.open("rb")}
    )
    image_id = uploaded.json()["image_id"]
    against = quiet_client.post(
        f"/api/v1/recognition/faces/{image_id}/verify",
        params={"status": "true"},
        files={"file": target.open("rb")},
    )
    assert against.status_code == 200, against.text
    assert set(against.json()["result"][0]["execution_time"]) == {"detector", "calculator"}


def test_a_face_unlike_the_persons_other_photos_is_said_so(client: TestClient) -> None:
    """A stranger's photo added to a person, and a group photo whose largest face was someone else's,
    were accepted without a word (testers'). Their own photos go on without a note."""
    gore = image_files(FACES / "lfw_dev" / "known" / "Al_Gore")
    person = client.post("/api/v1/people", data={"name": "Al Gore"}, files=photo_fields(gore[:4])).json()
    own = client.post(f"/api/v1/people/{person['id']}/photos", files=photo_fields(gore[4:6])).json()
    for photo in [*person["photos"], *own["photos"]]:
        assert photo["verdict"] == "accepted" and "stranger" not in (photo["message"] or ""), photo
    others = [image_files(FACES / "unknown_singles")[0], FACES / "multi" / "azure_detection4.jpg"]
    added = client.post(f"/api/v1/people/{person['id']}/photos", files=photo_fields(others)).json()
    said = [(p["verdict"], p["message"] or "") for p in added["photos"]]
    assert all(
        verdict == "accepted" and "no better than a stranger's" in message for verdict, message in said
    ), said
    # One of a new person's two photos unlike the other: both are said so (which one is wrong, the
    # user knows).
    mixed = client.post(
        "/api/v1/people",
        data={"name": "Mixed"},
        files=photo_fields([gore[6], image_files(FACES / "unknown_singles")[1]]),
    ).json()
    assert all("no better than a stranger's" in (p["message"] or "") for p in mixed["photos"]), [
        p["message"] for p in mixed["photos"]
    ]


def test_with_every_photo_deleted_identify_says_why_nothing_is_current(client: TestClient) -> None:
    """Every photo deleted (CompreFace's DELETE .../faces without a subject): no version is current,
    and identify's 409 said only "model is not ready", which read as "wait" (a tester's)."""
    photos = image_files(LFW10 / "Tony_Blair")
    client.post("/api/v1/people", data={"name": "Tony Blair"}, files=photo_fields(photos[:3]))
    wait_until_trained(client)
    assert client.delete("/api/v1/recognition/faces").json() == {"deleted": 3}
    wait_until_trained(client)
    answer = client.post("/api/v1/identify", files={"photo": (photos[5].name, photos[5].read_bytes())})
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["message"] == (
        "model is not ready: no person has an accepted photo; there is nothing to recognise"
    ), answer.text
