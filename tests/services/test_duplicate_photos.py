"""The same photo bytes are stored once per person: a second copy gets a verdict, like any refused photo."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import Session

from faceforge.core.config import Settings
from faceforge.serving.services.people import (
    ChangeResult,
    PhotosRejectedError,
    Upload,
    prepare_photos,
    store_prepared,
    write_with_files,
)
from faceforge.storage import people_store
from tests.api.fixtures import BOTH_DATABASES, photo_fields
from tests.conftest import LFW10

BLAIR = sorted((LFW10 / "Tony_Blair").iterdir())
BUSH = sorted((LFW10 / "George_W_Bush").iterdir())


def test_the_same_photo_is_refused_for_the_same_person(quiet_client: TestClient) -> None:
    first = quiet_client.post(
        "/api/v1/people?train=false",
        data={"name": "Tony"},
        files=photo_fields([BLAIR[0], BLAIR[1], BLAIR[0]]),
    )
    assert first.status_code == 201, first.text
    person = first.json()
    verdicts = person["photos"]
    assert [v["verdict"] for v in verdicts] == ["accepted", "accepted", "rejected"]
    assert verdicts[2]["reasons"] == ["duplicate_photo"]
    assert "photo 1 of this request" in verdicts[2]["message"]
    kept = verdicts[0]["photo_id"]

    # Sent again later: refused with the stored photo's id; with nothing else new, nothing is stored.
    again = quiet_client.post(
        f"/api/v1/people/{person['id']}/photos?train=false", files=photo_fields([BLAIR[0]])
    )
    assert again.status_code == 422, again.text
    error = again.json()["error"]
    assert error["code"] == "photos_rejected"
    (verdict,) = error["photos"]
    assert verdict["verdict"] == "rejected" and verdict["reasons"] == ["duplicate_photo"]
    assert f"(photo {kept})" in verdict["message"]
    mixed = quiet_client.post(
        f"/api/v1/people/{person['id']}/photos?train=false", files=photo_fields([BLAIR[1], BLAIR[2]])
    ).json()
    assert [(v["verdict"], v["reasons"]) for v in mixed["photos"]] == [
        ("rejected", ["duplicate_photo"]),
        ("accepted", []),
    ]
    assert mixed["photo_count"] == 3
    assert len(quiet_client.get(f"/api/v1/people/{person['id']}/photos").json()) == 3

    # Another person may have the same photo (a group photo names several people).
    other = quiet_client.post(
        "/api/v1/people?train=false", data={"name": "Someone"}, files=photo_fields([BLAIR[0]])
    )
    assert other.status_code == 201 and other.json()["photos"][0]["verdict"] == "accepted"


@BOTH_DATABASES
def test_one_photo_sent_twice_at_once_is_stored_once(
    quiet_client: TestClient, quiet_settings: Settings
) -> None:
    """Two requests racing with the same bytes: the second to write sees the first's row, and its
    file is removed."""
    person = quiet_client.post("/api/v1/people", data={"name": "George"}).json()
    url = f"/api/v1/people/{person['id']}/photos?train=false"
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda _: quiet_client.post(url, files=photo_fields([BUSH[0]])), range(2)))
    assert sorted(a.status_code for a in answers) == [201, 422], [a.text for a in answers]
    assert len(quiet_client.get(f"/api/v1/people/{person['id']}/photos").json()) == 1
    assert len(list((quiet_settings.files_dir / "photos").iterdir())) == 1


@contextmanager
def writes_held(database_url: str) -> Iterator[None]:
    """Every write waits while this is open: on SQLite the database's write lock, on PostgreSQL the
    tables a new person or stranger is inserted into (the first write of each request below)."""
    if database_url.startswith("sqlite"):
        blocker = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        return
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("LOCK TABLE people, strangers IN EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


@BOTH_DATABASES
@pytest.mark.parametrize("other", ["/api/v1/strangers", "/api/v1/people"])
def test_one_photo_sent_as_two_owners_at_once_is_stored_once(
    quiet_client: TestClient, quiet_settings: Settings, other: str
) -> None:
    """A stranger's photo is refused for another stranger and for a person (it would make them
    unnameable). Two requests that both passed that check before either wrote (a double click on Try
    it, an import beside the dashboard) stored it twice: the one that writes second must refuse it.
    Which one writes first is up to the race. On SQLite the serialised write transactions are what
    makes the second see the first's row; on PostgreSQL the photo's lock (``lock_photos``)."""

    def stored() -> list[Path]:  # people's and strangers' photo files
        return [path for path in quiet_settings.files_dir.rglob("*") if path.is_file()]

    def send(url: str) -> Response:
        fields = {"name": "George"} if url.endswith("people") else {"note": "seen at the door"}
        answer: Response = quiet_client.post(f"{url}?train=false", data=fields, files=photo_fields([BUSH[3]]))
        return answer

    with ThreadPoolExecutor(max_workers=2) as pool:
        with writes_held(quiet_settings.resolved_database_url):
            answers = [pool.submit(send, url) for url in (other, "/api/v1/strangers")]
            # Below SQLite's busy timeout (30 s), past which the held writes fail as "database locked".
            deadline = time.monotonic() + 20
            # Each request writes its photo's file before its transaction: both passed the checks.
            while len(stored()) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            prepared = len(stored())
        first_answer, second_answer = (answer.result() for answer in answers)
    assert prepared == 2, f"{prepared} of 2 requests had written their photo after 20 s"
    codes = sorted([first_answer.status_code, second_answer.status_code])
    assert codes == [201, 422], [first_answer.text, second_answer.text]
    refused = next(a for a in (first_answer, second_answer) if a.status_code == 422).json()["error"]
    assert refused["code"] == "photos_rejected"
    assert refused["photos"][0]["reasons"] in (["stranger_photo"], ["enrolled_photo"])
    strangers = quiet_client.get("/api/v1/strangers").json()
    people = quiet_client.get("/api/v1/people").json()
    holders = strangers["total"] + people["total"]
    assert holders == 1, (strangers, people)
    assert len(stored()) == 1  # the refused request's file is gone


def test_all_or_nothing_holds_when_a_photo_is_taken_between_analysis_and_write(
    quiet_client: TestClient, quiet_settings: Settings
) -> None:
    """DeepStack's register stores all its images or none. Checked before the write only, a photo
    stored as a stranger's between the analysis and the write was refused in the transaction and
    the others stored, with "face added". The write itself now keeps to all or nothing."""
    people = quiet_client.app.state.services.people  # type: ignore[attr-defined]
    uploads = [Upload(path.name, path.read_bytes()) for path in BLAIR[:2]]
    prepared = prepare_photos(None, people.analyse(uploads), people.files, people._held_by_strangers)
    assert [v.accepted for v in prepared.verdicts] == [True, True]
    stranger = quiet_client.post("/api/v1/strangers?train=false", files=photo_fields(BLAIR[1:2]))
    assert stranger.status_code == 201, stranger.text

    def change(session: Session, unused: list[str]) -> ChangeResult:
        prepared.lock(session)
        person_id = people_store.create_person(session, name="Tony", position=None, external_id=None)
        verdicts = store_prepared(people._owner(session, person_id), prepared, unused, all_or_nothing=True)
        return ChangeResult(people_store.get_person(session, person_id=person_id), verdicts, None)

    with pytest.raises(PhotosRejectedError) as refused:
        write_with_files(people.sessions, people.files, change, prepared.names)
    assert "1 of 2 photos refused, so none was stored" in str(refused.value)
    assert quiet_client.get("/api/v1/people").json()["total"] == 0
    assert not list((quiet_settings.files_dir / "photos").iterdir())  # the stranger's photo is elsewhere
