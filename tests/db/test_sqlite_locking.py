"""SQLite: readers never wait for a writer, and photo files are written before the short write
transaction (and removed when it fails)."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from faceforge.core.config import Settings
from tests.api.fixtures import photo_fields, wait_for
from tests.conftest import LFW10

PHOTO = LFW10 / "Tony_Blair" / "Tony_Blair_0001.jpg"


def _write_lock(settings: Settings) -> sqlite3.Connection:
    """Another process's writer, holding SQLite's write lock until the caller commits or rolls back."""
    holder = sqlite3.connect(
        settings.resolved_database_url.split("///", 1)[1], isolation_level=None, timeout=0
    )
    holder.execute("PRAGMA foreign_keys=ON")
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_read_does_not_wait_for_a_writer(quiet_client: TestClient, quiet_settings: Settings) -> None:
    ada = quiet_client.post("/api/v1/people", data={"name": "Ada"}).json()
    holder = _write_lock(quiet_settings)
    try:
        holder.execute("UPDATE people SET name = 'Not yet' WHERE id = ?", (ada["id"],))
        # Answered while the write lock is still held (it used to queue for the 30 s busy timeout and
        # fail), from the last committed state.
        listing = quiet_client.get("/api/v1/people")
        person = quiet_client.get(f"/api/v1/people/{ada['id']}")
    finally:
        holder.rollback()
        holder.close()
    assert listing.status_code == 200 and [p["name"] for p in listing.json()["items"]] == ["Ada"]
    assert person.status_code == 200 and person.json()["name"] == "Ada"


def test_photo_files_are_written_before_the_write_lock_and_removed_when_the_change_fails(
    quiet_client: TestClient, quiet_settings: Settings
) -> None:
    ada = quiet_client.post("/api/v1/people", data={"name": "Ada"}).json()
    photos = quiet_settings.files_dir / "photos"

    def files() -> list[str]:
        return sorted(p.name for p in photos.iterdir()) if photos.is_dir() else []

    holder = _write_lock(quiet_settings)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(
                quiet_client.post, f"/api/v1/people/{ada['id']}/photos", files=photo_fields([PHOTO])
            )
            # The photo is analysed and its file on disk (complete, not a temporary) while the request
            # waits for the write lock: the lock is held for the row alone.
            (written,) = wait_for(
                lambda: [n for n in files() if not n.startswith(".")], timeout=60, what="the photo file"
            )
            assert not pending.done()
            assert (photos / written).read_bytes() == PHOTO.read_bytes()
            # Meanwhile another writer deletes the person: the change fails and leaves no file behind.
            holder.execute("DELETE FROM people WHERE id = ?", (ada["id"],))
            holder.execute("COMMIT")
            response = pending.result()
    finally:
        if holder.in_transaction:
            holder.rollback()
        holder.close()
    assert response.status_code == 404, response.text
    assert files() == []
