"""Ids of deleted people and photos are never given again: versions name people by id, and a retried
DELETE must not remove someone else."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient

from faceforge.storage.engine import MIGRATIONS, make_engine, upgrade_database
from tests.api.fixtures import BOTH_DATABASES, photo_fields
from tests.conftest import LFW10

BLAIR = sorted((LFW10 / "Tony_Blair").iterdir())
BUSH = sorted((LFW10 / "George_W_Bush").iterdir())


def _register(client: TestClient, name: str, photo: Path) -> tuple[int, int]:
    response = client.post("/api/v1/people?train=false", data={"name": name}, files=photo_fields([photo]))
    assert response.status_code == 201, response.text
    body = response.json()
    return body["id"], body["photos"][0]["photo_id"]


@BOTH_DATABASES
def test_deleted_ids_are_never_given_again(quiet_client: TestClient) -> None:
    ada, _ = _register(quiet_client, "Ada", BLAIR[0])
    bob, bob_photo = _register(quiet_client, "Bob", BUSH[0])
    assert quiet_client.delete(f"/api/v1/people/{bob}").status_code == 204
    carl, carl_photo = _register(quiet_client, "Carl", BUSH[1])
    assert carl > bob and carl_photo > bob_photo
    # A retried DELETE of Bob finds nobody; Carl and Ada stay.
    assert quiet_client.delete(f"/api/v1/people/{bob}").status_code == 404
    names = [p["name"] for p in quiet_client.get("/api/v1/people").json()["items"]]
    assert names == ["Ada", "Carl"]

    # Photos too: the newest photo deleted, the next one gets a new id.
    added = quiet_client.post(
        f"/api/v1/people/{ada}/photos?train=false", files=photo_fields([BLAIR[1]])
    ).json()["photos"][0]["photo_id"]
    assert quiet_client.delete(f"/api/v1/people/{ada}/photos/{added}").status_code == 204
    again = quiet_client.post(
        f"/api/v1/people/{ada}/photos?train=false", files=photo_fields([BLAIR[2]])
    ).json()["photos"][0]["photo_id"]
    assert again > added


def _before_ids_were_kept(path: Path) -> None:
    engine = make_engine(f"sqlite:///{path}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    engine.dispose()


def test_an_existing_sqlite_database_stops_giving_ids_again(tmp_path: Path) -> None:
    """A database made before ids were kept: its rows survive the upgrade, and new ids start above
    every id in use and every person id a model version names (person 4 was deleted after version 1
    was built, person 3 was the newest and deleted too)."""
    path = tmp_path / "faceforge.db"
    _before_ids_were_kept(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys=ON")
    now = "2026-01-01 00:00:00"
    for person_id in (1, 2, 3):
        db.execute(
            "INSERT INTO people (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (person_id, f"person {person_id}", now, now),
        )
    for photo_id, person_id in ((1, 1), (2, 2), (3, 2), (4, 3)):
        db.execute(
            "INSERT INTO photos (id, person_id, stored_name, sha256, content_type, size_bytes, width, "
            "height, box, landmarks, score, embedder, embedding, created_at) "
            "VALUES (?, ?, ?, '', 'image/jpeg', 1, 1, 1, '{}', '[]', 1.0, 'e', x'00', ?)",
            (photo_id, person_id, f"{photo_id}.jpg", now),
        )
    roster = [{"id": 1, "name": "person 1"}, {"id": 4, "name": "person 4"}]
    db.execute(
        "INSERT INTO model_versions (version, status, created_at, target, people, metrics, files) "
        "VALUES (1, 'ready', ?, 1, ?, '{}', '{}')",
        (now, json.dumps(roster)),
    )
    db.execute("DELETE FROM people WHERE id = 3")  # its photo 4 goes with it
    db.execute("INSERT INTO strangers (id, created_at) VALUES (1, ?), (2, ?)", (now, now))
    db.execute("DELETE FROM strangers WHERE id = 2")
    db.close()

    engine = make_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    engine.dispose()

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys=ON")
    assert db.execute("SELECT id, person_id FROM photos ORDER BY id").fetchall() == [(1, 1), (2, 2), (3, 2)]
    db.execute("INSERT INTO people (name, created_at, updated_at) VALUES ('new', ?, ?)", (now, now))
    assert db.execute("SELECT max(id) FROM people").fetchone() == (5,)
    db.execute(
        "INSERT INTO photos (person_id, stored_name, sha256, content_type, size_bytes, width, height, box, "
        "landmarks, score, embedder, embedding, created_at) "
        "VALUES (5, 'n.jpg', '', 'image/jpeg', 1, 1, 1, '{}', '[]', 1.0, 'e', x'00', ?)",
        (now,),
    )
    assert db.execute("SELECT max(id) FROM photos").fetchone() == (4,)  # above the largest in use
    db.execute("INSERT INTO strangers (created_at) VALUES (?)", (now,))
    db.execute("DELETE FROM strangers WHERE id = 2")
    db.execute("INSERT INTO strangers (created_at) VALUES (?)", (now,))
    assert db.execute("SELECT id FROM strangers ORDER BY id").fetchall() == [(1,), (3,)]
    # The photos still belong to their people: deleting a person takes their photos, nobody else's.
    db.execute("DELETE FROM people WHERE id = 2")
    assert db.execute("SELECT id FROM photos ORDER BY id").fetchall() == [(1,), (4,)]
    db.close()
