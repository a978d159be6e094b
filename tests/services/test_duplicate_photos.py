"""The same photo bytes are stored once per person: a second copy gets a verdict, like any refused photo."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from faceforge.core.config import Settings
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
