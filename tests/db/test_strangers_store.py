"""The strangers store's transactions against each other on a real PostgreSQL (READ COMMITTED: each
statement sees what others committed before it, so only a lock keeps two deletes from both counting
two photos)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from faceforge.core.errors import ConflictError
from faceforge.storage import strangers_store
from faceforge.storage.engine import make_sessionmaker
from tests.api.fixtures import wait_for
from tests.db.postgresql_locks import POSTGRESQL_ONLY, blocked_by
from tests.db.rows import photo_fields


def _stranger_with_photos(sessions: sessionmaker[Session], count: int) -> tuple[int, list[int]]:
    with sessions.begin() as session:
        stranger = strangers_store.create_stranger(session, note="the mailman", source=None)
        photos = [
            strangers_store.add_photo(
                session,
                stranger_id=stranger,
                stored_name=f"stranger-{i}.jpg",
                fields=photo_fields(i),
            )
            for i in range(count)
        ]
    return stranger, photos


@POSTGRESQL_ONLY
def test_two_deletes_at_once_never_take_a_strangers_last_two_photos(engine: Engine) -> None:
    sessions = make_sessionmaker(engine)
    stranger, (first, second) = _stranger_with_photos(sessions, 2)

    def delete_second() -> str:
        with sessions.begin() as session:
            return strangers_store.delete_photo(session, stranger_id=stranger, photo_id=second)

    with ThreadPoolExecutor(max_workers=1) as pool, sessions.begin() as deleting:
        strangers_store.delete_photo(deleting, stranger_id=stranger, photo_id=first)  # not committed yet
        racing = pool.submit(delete_second)
        # Unlocked, the second delete would count two photos (the first is not committed) and go on.
        wait_for(lambda: blocked_by(deleting, engine), timeout=30, what="the second delete to wait")
        deleting.commit()
        with pytest.raises(ConflictError, match="only photo"):
            racing.result(timeout=30)

    with sessions() as session:
        assert [p.id for p in strangers_store.list_photos(session, stranger_id=stranger)] == [second]


@POSTGRESQL_ONLY
def test_deleting_a_stranger_while_a_photo_is_added_names_that_photos_file_too(engine: Engine) -> None:
    """The delete must wait for the upload holding the stranger's lock, then see its photo: otherwise
    the cascade removes the row and the photo's file is never deleted (a face left on disk)."""
    sessions = make_sessionmaker(engine)
    stranger, _ = _stranger_with_photos(sessions, 1)

    def delete() -> list[str]:
        with sessions.begin() as session:
            return strangers_store.delete_stranger(session, stranger_id=stranger)

    with ThreadPoolExecutor(max_workers=1) as pool, sessions.begin() as adding:
        strangers_store.lock_stranger(adding, stranger_id=stranger)  # as an upload does
        strangers_store.add_photo(
            adding, stranger_id=stranger, stored_name="late.jpg", fields=photo_fields(9)
        )
        racing = pool.submit(delete)
        wait_for(lambda: blocked_by(adding, engine), timeout=30, what="the delete to wait")
        adding.commit()
        assert sorted(racing.result(timeout=30)) == ["late.jpg", "stranger-0.jpg"]
