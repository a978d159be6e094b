"""The strangers collection over HTTP: add, list, look at, delete; each change trains a version, and
no answer of any API (people, versions, labels, CompreFace, DeepStack, the original app) or model
ever names a stranger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from faceforge.core.config import LimitSettings, Settings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from tests.api.fixtures import local_client, photo_fields, service_settings, wait_until_trained
from tests.conftest import FACES, LFW10

ADMIN, READ = "strangers-admin", "strangers-read"
AS_ADMIN, AS_READER = {"X-API-Key": ADMIN}, {"X-API-Key": READ}
PEOPLE = ("Colin_Powell", "Tony_Blair")
STRANGER = "Hugo_Chavez"  # enrolled as a stranger: photos 0-3 stored, 4-9 never seen
NOTE = "the mailman, Tuesdays"


@pytest.fixture
def keyed(tmp_path: Path, database_url: str, settings: Settings) -> Iterator[TestClient]:
    app_settings = service_settings(
        tmp_path,
        database_url,
        settings,
        admin_keys=ADMIN,
        read_keys=READ,
        limits=LimitSettings(max_photos_per_request=4),
    )
    with local_client(create_app(app_settings)) as client:
        client.headers.update(AS_ADMIN)
        yield client


def _enrol_people(client: TestClient) -> dict[str, int]:
    ids = {}
    for folder in PEOPLE:
        photos = photo_fields(image_files(LFW10 / folder)[:4])
        response = client.post("/api/v1/people", data={"name": folder.replace("_", " ")}, files=photos)
        assert response.status_code == 201, response.text
        ids[folder] = response.json()["id"]
    return ids


def _version(client: TestClient) -> dict[str, Any]:
    status = wait_until_trained(client)
    assert status["last_failure"] is None, status
    current: dict[str, Any] = client.get("/api/v1/models/current").json()
    return current


def _everything_said_about_people(client: TestClient, version: int) -> str:
    """Every listing of people any API gives, and the version's files that carry names."""
    answers = [
        client.get("/api/v1/people").text,
        client.get("/api/v1/people", params={"q": "mailman"}).text,
        client.get(f"/api/v1/models/{version}").text,
        client.get(f"/api/v1/models/{version}/files/labels.txt").text,
        client.get(f"/api/v1/models/{version}/files/manifest.json").text,
        client.get("/api/v1/recognition/subjects").text,
        client.get("/api/v1/recognition/faces").text,
        client.post("/v1/vision/face/list", data={"api_key": ADMIN}).text,
        client.get("/gorillas/model/info").text,
    ]
    return "\n".join(answers)


def test_strangers_are_stored_listed_and_never_named(keyed: TestClient) -> None:
    client = keyed
    ids = _enrol_people(client)
    first = _version(client)

    stranger_photos = image_files(LFW10 / STRANGER)
    response = client.post("/api/v1/strangers", data={"note": NOTE}, files=photo_fields(stranger_photos[:4]))
    assert response.status_code == 201, response.text
    added = response.json()
    assert added["note"] == NOTE and added["photo_count"] == 4 and added["source"] is None
    assert [p["verdict"] for p in added["photos"]] == ["accepted"] * 4
    assert [p["message"] for p in added["photos"]] == [None] * 4  # like none of the people
    assert added["training"] is not None  # the change asked for a version ...
    second = _version(client)
    assert second["version"] == first["version"] + 1  # ... and got one
    assert first["metrics"]["strangers"] == {"count": 0, "photos": 0}
    assert second["metrics"]["strangers"] == {"count": 1, "photos": 4}
    stranger_id = added["id"]

    # Listed and shown, with faces for admins only.
    page = client.get("/api/v1/strangers").json()
    assert page["total"] == 1 and page["items"][0]["id"] == stranger_id
    thumbnail_url = page["items"][0]["thumbnail_url"]
    thumbnail = client.get(thumbnail_url)
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    detail = client.get(f"/api/v1/strangers/{stranger_id}").json()
    assert len(detail["photos"]) == 4
    stored = client.get(detail["photos"][0]["file_url"])
    assert stored.status_code == 200 and stored.content == stranger_photos[0].read_bytes()
    as_reader = client.get("/api/v1/strangers", headers=AS_READER).json()
    assert as_reader["items"][0]["thumbnail_url"] is None
    reader_detail = client.get(f"/api/v1/strangers/{stranger_id}", headers=AS_READER).json()
    assert [p["file_url"] for p in reader_detail["photos"]] == [None] * 4
    assert client.get(thumbnail_url, headers=AS_READER).status_code == 403

    # Never named: no listing, label or roster holds them; their own photos answer unknown.
    said = _everything_said_about_people(client, second["version"])
    assert "mailman" not in said and "Chavez" not in said  # their note, their photos' folder
    roster = client.get("/api/v1/models/current").json()["people"]
    assert sorted(p["id"] for p in roster) == sorted(ids.values())
    labels = client.get(f"/api/v1/models/{second['version']}/files/labels.txt").text.splitlines()
    assert len(labels) == len(PEOPLE) + 1
    assert client.get("/api/v1/people").json()["total"] == len(PEOPLE)
    for photo in stranger_photos[:2]:
        answer = client.post("/api/v1/identify", files={"photo": (photo.name, photo.read_bytes())}).json()
        assert answer["faces"][0]["match"] is None, photo.name
        assert {c["person_id"] for c in answer["faces"][0]["candidates"]} <= set(ids.values())

    # More photos of the same stranger: stored with verdicts, another version follows.
    more = client.post(f"/api/v1/strangers/{stranger_id}/photos", files=photo_fields(stranger_photos[4:6]))
    assert more.status_code == 201 and more.json()["photo_count"] == 6
    third = _version(client)
    assert third["version"] == second["version"] + 1

    # One photo deleted (a face that was not theirs): its file and row go, a version follows.
    folder = client.app.state.services.strangers.files.directory  # type: ignore[attr-defined]
    assert len(list(folder.iterdir())) == 6
    photos = client.get(f"/api/v1/strangers/{stranger_id}").json()["photos"]
    gone = photos[-1]
    route = f"/api/v1/strangers/{stranger_id}/photos/{gone['id']}"
    assert client.delete(route, headers=AS_READER).status_code == 403
    assert client.delete(route).status_code == 204
    assert len(list(folder.iterdir())) == 5
    left = client.get(f"/api/v1/strangers/{stranger_id}").json()
    assert left["photo_count"] == 5 and gone["id"] not in [p["id"] for p in left["photos"]]
    assert client.get(gone["file_url"]).status_code == 404
    missing = client.delete(route)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    # A photo asked for under another (real) stranger's id is not theirs.
    neighbour = image_files(LFW10 / "George_W_Bush")[:1]
    second_id = client.post(
        "/api/v1/strangers?train=false", data={"note": "the neighbour"}, files=photo_fields(neighbour)
    ).json()["id"]
    other = client.delete(f"/api/v1/strangers/{second_id}/photos/{photos[0]['id']}")
    assert other.status_code == 404 and "of stranger" in other.json()["error"]["message"]
    assert client.get(f"/api/v1/strangers/{stranger_id}").json()["photo_count"] == 5
    assert client.delete(f"/api/v1/strangers/{second_id}").status_code == 204
    after_photo = _version(client)
    assert after_photo["version"] > third["version"]  # (the neighbour came and went as well)
    assert after_photo["metrics"]["strangers"] == {"count": 1, "photos": 5}

    # A photo deleted by another request between reading its row and sending its file is gone
    # (404), not a fault of the server's (500): the row is asked again when the file is missing.
    services = client.app.state.services  # type: ignore[attr-defined]
    files = services.strangers.files

    def deleted_meanwhile(name: str) -> Path:
        del files.path  # the class's own from now on (the delete below uses it too)
        services.strangers.delete_photo(stranger_id=stranger_id, photo_id=photos[4]["id"])
        path: Path = files.path(name)
        return path

    files.path = deleted_meanwhile
    answer = client.get(photos[4]["file_url"])
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found", answer.text
    assert client.get(f"/api/v1/strangers/{stranger_id}").json()["photo_count"] == 4

    # Their only photo goes with them, not alone: a stranger without a face would teach nothing.
    for photo in photos[1:4]:
        assert client.delete(f"/api/v1/strangers/{stranger_id}/photos/{photo['id']}").status_code == 204
    last = client.delete(f"/api/v1/strangers/{stranger_id}/photos/{photos[0]['id']}")
    assert last.status_code == 409, last.text
    assert (
        last.json()["error"]["code"] == "conflict"
        and "delete the stranger" in last.json()["error"]["message"]
    )
    assert client.get(f"/api/v1/strangers/{stranger_id}").json()["photo_count"] == 1
    assert len(list(folder.iterdir())) == 1
    third = _version(client)

    # Deleted: files and rows gone, and a version without them follows.
    assert client.delete(f"/api/v1/strangers/{stranger_id}").status_code == 204
    assert list(folder.iterdir()) == []
    assert client.get(f"/api/v1/strangers/{stranger_id}").status_code == 404
    assert client.get("/api/v1/strangers").json() == {"items": [], "total": 0, "offset": 0, "limit": 50}
    fourth = _version(client)
    assert fourth["version"] == third["version"] + 1
    assert fourth["metrics"]["strangers"] == {"count": 0, "photos": 0}


def test_bad_strangers_are_refused_in_the_api_shape(keyed: TestClient) -> None:
    client = keyed
    cat = image_files(FACES / "negatives")[0]
    face = image_files(FACES / "lfw_dev" / "unknown")[0]
    before = client.get("/api/v1/training").json()["requested"]

    def refused(status: int, code: str, response: Any) -> None:  # TestClient's response
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code

    # Photos without a face: every verdict, nothing stored.
    no_face = client.post("/api/v1/strangers", files=photo_fields([cat]))
    refused(422, "photos_rejected", no_face)
    assert no_face.json()["error"]["photos"][0]["reasons"] == ["no_face"]
    garbage = client.post("/api/v1/strangers", files=[("photos", ("x.jpg", b"not a photo", "image/jpeg"))])
    refused(422, "photos_rejected", garbage)
    refused(400, "photos_required", client.post("/api/v1/strangers", data={"note": "no photos"}))
    refused(413, "too_many_photos", client.post("/api/v1/strangers", files=photo_fields([face] * 5)))
    refused(
        400,
        "note_too_long",
        client.post("/api/v1/strangers", data={"note": "x" * 501}, files=photo_fields([face])),
    )
    refused(403, "forbidden", client.post("/api/v1/strangers", files=photo_fields([face]), headers=AS_READER))
    refused(401, "unauthorized", client.get("/api/v1/strangers", headers={"X-API-Key": "nope"}))
    for path in (
        "/api/v1/strangers/999",
        "/api/v1/strangers/999/thumbnail",
        "/api/v1/strangers/999/photos/1/file",
    ):
        refused(404, "not_found", client.get(path))
    refused(404, "not_found", client.delete("/api/v1/strangers/999"))
    refused(404, "not_found", client.post("/api/v1/strangers/999/photos", files=photo_fields([face])))
    refused(404, "not_found", client.get("/api/v1/strangers/0"))  # an id that names nothing
    assert client.get("/api/v1/strangers").json()["total"] == 0
    assert client.get("/api/v1/training").json()["requested"] == before  # nothing asked for a version

    # train=false stores without asking for a version; a source is unique.
    quiet = client.post(
        "/api/v1/strangers?train=false", data={"source": "door-cam"}, files=photo_fields([face])
    )
    assert quiet.status_code == 201 and quiet.json()["training"] is None
    assert client.get("/api/v1/training").json()["requested"] == before
    again = client.post("/api/v1/strangers", data={"source": "door-cam"}, files=photo_fields([face]))
    refused(409, "conflict", again)
    found = client.get("/api/v1/strangers", params={"source": "door-cam"}).json()
    assert [s["id"] for s in found["items"]] == [quiet.json()["id"]]
    photo_of_other = client.get(f"/api/v1/strangers/{quiet.json()['id']}/photos/999/file")
    refused(404, "not_found", photo_of_other)
    assert json.loads(client.get("/api/v1/strangers?limit=0").text)["error"]["code"] == "invalid_request"

    # The same bytes as a person and as a stranger would make that person unnameable: refused both ways.
    as_person = client.post("/api/v1/people", data={"name": "Door Cam"}, files=photo_fields([face]))
    refused(422, "photos_rejected", as_person)
    verdict = as_person.json()["error"]["photos"][0]
    assert verdict["reasons"] == ["stranger_photo"] and f"stranger {quiet.json()['id']}" in verdict["message"]
    enrolled = image_files(LFW10 / PEOPLE[0])[:2]
    person = client.post("/api/v1/people", data={"name": "Colin Powell"}, files=photo_fields(enrolled[:1]))
    assert person.status_code == 201, person.text
    for attempt in (
        client.post("/api/v1/strangers", files=photo_fields(enrolled[:1])),
        client.post(f"/api/v1/strangers/{quiet.json()['id']}/photos", files=photo_fields(enrolled[:1])),
    ):
        refused(422, "photos_rejected", attempt)
        verdict = attempt.json()["error"]["photos"][0]
        assert verdict["reasons"] == ["enrolled_photo"]
        assert f"Colin Powell (person {person.json()['id']})" in verdict["message"]
    mixed = client.post("/api/v1/strangers", files=photo_fields([enrolled[0], enrolled[1]]))
    assert mixed.status_code == 201, mixed.text  # the other photo is a different file: stored
    assert [v["verdict"] for v in mixed.json()["photos"]] == ["rejected", "accepted"]
    # The same face twice as strangers (a second click on Try it): refused, naming the first.
    for attempt in (
        client.post("/api/v1/strangers", files=photo_fields([face])),
        client.post(f"/api/v1/strangers/{mixed.json()['id']}/photos", files=photo_fields([face])),
    ):
        refused(422, "photos_rejected", attempt)
        verdict = attempt.json()["error"]["photos"][0]
        assert (
            verdict["reasons"] == ["stranger_photo"]
            and f"stranger {quiet.json()['id']}" in verdict["message"]
        )


def test_a_stranger_who_looks_like_someone_stays_a_stranger(client: TestClient) -> None:
    """The strangers' faces reach the head: photos of Colin Powell collected as a stranger ("not
    Colin") raise Colin's margin, so a further photo of that face is no longer named, and the version
    says its threshold was chosen with strangers."""
    colin = image_files(LFW10 / "Colin_Powell")
    for folder in PEOPLE:
        photos = photo_fields(image_files(LFW10 / folder)[:4])
        assert client.post("/api/v1/people", data={"name": folder}, files=photos).status_code == 201
    first = _version(client)
    probe = {"photo": (colin[9].name, colin[9].read_bytes())}
    named = client.post("/api/v1/identify", files=probe).json()["faces"][0]["match"]
    assert named is not None and named["name"] == "Colin_Powell"

    added = client.post("/api/v1/strangers", data={"note": "not Colin"}, files=photo_fields(colin[4:9]))
    assert added.status_code == 201, added.text
    # Said as the photos are taken (a person of one photo would lose nothing the version measures).
    colin_id = named["person_id"]
    for verdict in added.json()["photos"]:
        assert verdict["verdict"] == "accepted"
        assert f"looks like Colin_Powell's (person {colin_id}," in (verdict["message"] or ""), verdict
        # A condition, not a verdict: a stranger who only looks like Colin leaves him named (a tester
        # was told "they will hardly be named" and to delete the stranger that had fixed a mistake).
        assert (
            "if this stranger is them, delete the stranger, or they will hardly be named"
            in verdict["message"]
        )
    second = _version(client)
    manifest = client.get(f"/api/v1/models/{second['version']}/files/manifest.json").json()
    assert "strangers" in manifest["calibration"]["method"], manifest["calibration"]
    before = client.get(f"/api/v1/models/{first['version']}/files/manifest.json").json()
    assert "strangers" not in before["calibration"]["method"]
    # Colin's own photos as a stranger cost Colin: the version goes live (the user asked for it) and says so.
    listed = {v["version"]: v for v in client.get("/api/v1/models").json()["items"]}
    message = listed[second["version"]]["status_message"]
    assert message and message.startswith("collected strangers raised the threshold of "), listed
    assert f"with version {first['version']}" in message and "delete that stranger" in message
    answer = client.post("/api/v1/identify", files=probe).json()
    assert answer["faces"][0]["match"] is None, answer


def test_enrolling_someone_collected_as_a_stranger_says_so(client: TestClient) -> None:
    """A tester enrolled a person whose other photos were a stranger's: accepted without a word, then
    hardly ever named. Their accepted photos now say which stranger they look like."""
    stranger = client.post(
        "/api/v1/strangers",
        data={"note": "the mailman"},
        files=photo_fields(image_files(LFW10 / STRANGER)[:4]),
    )
    assert stranger.status_code == 201, stranger.text
    same = client.post(
        "/api/v1/people", data={"name": "Hugo"}, files=photo_fields(image_files(LFW10 / STRANGER)[4:6])
    )
    assert same.status_code == 201, same.text
    for verdict in same.json()["photos"]:
        assert verdict["verdict"] == "accepted"
        # By their note too, as the Strangers page shows them (a tester looked for "stranger 1").
        said = f'looks like the photos of stranger {stranger.json()["id"]} ("the mailman")'
        assert said in (verdict["message"] or ""), verdict
        assert "if they are that stranger, delete the stranger" in verdict["message"], verdict
    other = client.post(
        "/api/v1/people", data={"name": "Colin"}, files=photo_fields(image_files(LFW10 / PEOPLE[0])[:3])
    )
    assert [v["message"] for v in other.json()["photos"]] == [None, None, None]


def test_a_photo_another_person_has_is_said_at_the_upload(quiet_client: TestClient) -> None:
    """A photo filed under a second person, or twice under two names, was accepted without a word;
    only the next version flagged the pair. The upload now says who has the same photo (a new
    person's, or more photos of someone)."""
    colin = image_files(LFW10 / PEOPLE[0])
    first = quiet_client.post("/api/v1/people", data={"name": "Colin"}, files=photo_fields(colin[:2])).json()
    said = f"the same photo is stored for Colin (person {first['id']})"
    again = quiet_client.post("/api/v1/people", data={"name": "Colin again"}, files=photo_fields(colin[1:3]))
    assert again.status_code == 201, again.text
    verdicts = again.json()["photos"]
    assert [v["verdict"] for v in verdicts] == ["accepted", "accepted"]  # said, not refused
    assert said in (verdicts[0]["message"] or "") and verdicts[1]["message"] is None, verdicts
    tony = quiet_client.post(
        "/api/v1/people", data={"name": "Tony"}, files=photo_fields(image_files(LFW10 / PEOPLE[1])[:1])
    ).json()
    added = quiet_client.post(f"/api/v1/people/{tony['id']}/photos", files=photo_fields(colin[:1]))
    assert said in (added.json()["photos"][0]["message"] or ""), added.text
    # Photos a person has themselves, or nobody else has, say nothing.
    more = quiet_client.post(f"/api/v1/people/{first['id']}/photos", files=photo_fields(colin[3:4]))
    assert more.json()["photos"][0]["message"] is None, more.text
    assert quiet_client.get(f"/api/v1/people/{tony['id']}").json()["photo_count"] == 2
    # DeepStack's register has only its message to say it in: it answered "face added", no more.
    tonys = image_files(LFW10 / PEOPLE[1])
    files = {"image1": ("a.jpg", colin[3].read_bytes()), "image2": ("b.jpg", tonys[1].read_bytes())}
    registered = quiet_client.post("/v1/vision/face/register", data={"userid": "Tony"}, files=files)
    assert registered.status_code == 200, registered.text
    answer = registered.json()
    assert answer["success"] is True and answer["message"].startswith(f"face added; a.jpg: {said}"), answer
    assert "b.jpg" not in answer["message"], answer  # nobody else has that one: nothing said of it
    assert quiet_client.get(f"/api/v1/people/{tony['id']}").json()["photo_count"] == 4
    # A photo two others have names both (a tester heard only of the first).
    third = quiet_client.post("/api/v1/people", data={"name": "Colin 3"}, files=photo_fields(colin[1:2]))
    both = f"for Colin (person {first['id']}) and Colin again (person {again.json()['id']}): "
    assert both in (third.json()["photos"][0]["message"] or ""), third.text
    # A group photo enrolled for two of its people, each their own face: no such note.
    examples = FACES / "face_recognition_examples"
    group = FACES / "multi" / "face_recognition_obama_and_biden.jpg"
    for name, folder in (("Barack", "Barack_Obama"), ("Joe", "Joe_Biden")):
        own = image_files(examples / folder)[:1]
        answer = quiet_client.post("/api/v1/people", data={"name": name}, files=photo_fields([*own, group]))
        assert answer.status_code == 201, answer.text
        taken = answer.json()["photos"][1]
        assert taken["verdict"] == "accepted" and "same photo" not in taken["message"], taken
        assert "matches the person's other photos" in taken["message"]  # the face of theirs it took


def test_a_face_the_current_version_names_as_someone_else_is_said_at_the_upload(client: TestClient) -> None:
    """A tester added a photo of Venus Williams to Tom Hanks: accepted without a word, while identify
    named her at 0.99. The upload now says whom the current version names the face as."""
    colin, tony = image_files(LFW10 / PEOPLE[0]), image_files(LFW10 / PEOPLE[1])
    ids = {}
    for name, photos in (("Colin", colin[:4]), ("Tony", tony[:4])):
        ids[name] = client.post("/api/v1/people", data={"name": name}, files=photo_fields(photos)).json()[
            "id"
        ]
    version = wait_until_trained(client)["current_version"]
    said = f"version {version} names this face as Tony (person {ids['Tony']}, confidence "
    # Stored without training, so the version that names the faces stays the one waited for.
    added = client.post(
        f"/api/v1/people/{ids['Colin']}/photos?train=false", files=photo_fields([colin[5], tony[5]])
    )
    own, misfiled = added.json()["photos"]
    assert own["verdict"] == misfiled["verdict"] == "accepted", added.text
    assert own["message"] is None and said in (misfiled["message"] or ""), added.text
    assert "if they are one person, merge them" in misfiled["message"]
    # Someone new whose face the version gives to Tony: one person under two names, perhaps.
    again = client.post("/api/v1/people?train=false", data={"name": "Anthony"}, files=photo_fields(tony[6:7]))
    assert said in (again.json()["photos"][0]["message"] or ""), again.text
    # A stranger to the version is said nothing.
    new = client.post(
        "/api/v1/people?train=false",
        data={"name": "Hugo"},
        files=photo_fields(image_files(LFW10 / STRANGER)[:1]),
    )
    assert new.json()["photos"][0]["message"] is None, new.text


def test_merging_two_people_who_share_a_photo_keeps_it_once(quiet_client: TestClient) -> None:
    """The upload says to merge two people named for one photo; merged, the kept person had it twice
    (counted and trained twice), which uploading it to them again is refused to prevent (a tester's)."""
    colin = image_files(LFW10 / PEOPLE[0])
    first = quiet_client.post("/api/v1/people", data={"name": "Colin"}, files=photo_fields(colin[:2])).json()
    again = quiet_client.post(
        "/api/v1/people", data={"name": "Colin 2"}, files=photo_fields(colin[1:3])
    ).json()
    photos_dir = quiet_client.app.state.services.settings.files_dir / "photos"  # type: ignore[attr-defined]
    assert len(list(photos_dir.iterdir())) == 4
    merged = quiet_client.post(f"/api/v1/people/{first['id']}/merge", json={"other_id": again["id"]})
    assert merged.status_code == 200 and merged.json()["photo_count"] == 3, merged.text
    photos = quiet_client.get(f"/api/v1/people/{first['id']}/photos").json()
    assert len({photo["sha256"] for photo in photos}) == len(photos) == 3, photos
    assert len(list(photos_dir.iterdir())) == 3  # the copy's file went with it


def test_strangers_that_look_like_people_never_hold_back_the_next_versions(client: TestClient) -> None:
    """A tester collected photos of two enrolled people as strangers ("Not <name>"): their held-out
    photos were no longer named, on purpose, and the known-accept floor then held back every later
    version, so a person enrolled next was never named. The floor judges the other people."""
    for folder in PEOPLE:
        photos = photo_fields(image_files(LFW10 / folder)[:4])
        assert client.post("/api/v1/people", data={"name": folder}, files=photos).status_code == 201
    first = _version(client)
    for folder in PEOPLE:
        lookalike = photo_fields(image_files(LFW10 / folder)[4:9])
        assert (
            client.post("/api/v1/strangers", data={"note": f"not {folder}"}, files=lookalike).status_code
            == 201
        )
    with_strangers = _version(client)
    assert with_strangers["version"] > first["version"]  # current: what adding the strangers asked for
    assert with_strangers["metrics"]["accept_rate"] < 0.5 and with_strangers["metrics"]["raised_people"] == 2
    newcomer = image_files(LFW10 / STRANGER)
    added = client.post("/api/v1/people", data={"name": "Newcomer"}, files=photo_fields(newcomer[:4]))
    assert added.status_code == 201, added.text
    after = _version(client)
    assert after["version"] > with_strangers["version"]
    listed = client.get("/api/v1/models").json()["items"]
    assert not [v for v in listed if (v["status_message"] or "").startswith("held back")], listed
    probe = {"photo": (newcomer[9].name, newcomer[9].read_bytes())}
    named = client.post("/api/v1/identify", files=probe).json()["faces"][0]["match"]
    assert named is not None and named["name"] == "Newcomer", named
