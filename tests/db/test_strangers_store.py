"""The strangers store's transactions against each other on a real PostgreSQL (READ COMMITTED: each
statement sees what others committed before it, so only a lock keeps two deletes from both counting
two photos)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from faceforge.core.errors import ConflictError
from faceforge.storage import strangers_store
from faceforge.storage.engine import make_sessionmaker
from tests.api.fixtures import wait_for
from tests.db.postgresql_locks import POSTGRESQL_ONLY, blocked_by


def _stranger_with_photos(sessions: sessionmaker[Session], count: int) -> tuple[int, list[int]]:
    with sessions.begin() as session:
        stranger = strangers_store.create_stranger(session, note="the mailman", source=None)
        photos = [
            strangers_store.add_photo(
                session,
                stranger_id=stranger,
                stored_name=f"stranger-{i}.jpg",
                fields={
                    "sha256": f"{i:064x}",
                    "content_type": "image/jpeg",
                    "size_bytes": 1000,
                    "width": 250,
                    "height": 250,
                    "box": {"x": 70, "y": 70, "width": 110, "height": 110},
                    "landmarks": [],
                    "score": 0.99,
                    "embedder": "test",
                    "embedding": np.zeros(4, dtype="<f4").tobytes(),
                },
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
