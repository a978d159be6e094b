"""The people store's transactions against each other on a real PostgreSQL. Under READ COMMITTED each
statement sees what others committed before it: a merge or a delete that does not first wait for the
person's lock (which an upload holds until its photo is committed) works on the photos it saw, and the
cascade then takes the photo it did not."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from faceforge.core.errors import NotFoundError
from faceforge.storage import people_store
from faceforge.storage.engine import make_sessionmaker, read_one_snapshot
from tests.api.fixtures import wait_for
from tests.db.postgresql_locks import POSTGRESQL_ONLY, blocked_by
from tests.db.rows import photo_fields


def _person_with_photo(sessions: sessionmaker[Session], name: str, index: int) -> int:
    with sessions.begin() as session:
        person = people_store.create_person(session, name=name, position=None, external_id=None)
        people_store.add_photo(
            session, person_id=person, stored_name=f"{name}.jpg", fields=photo_fields(index)
        )
    return person


def _adding_a_photo(session: Session, person_id: int) -> None:
    """What an upload does inside its transaction: lock the person, then add the photo."""
    people_store.lock_person(session, person_id=person_id)
    people_store.add_photo(session, person_id=person_id, stored_name="late.jpg", fields=photo_fields(9))


@POSTGRESQL_ONLY
def test_a_merge_moves_the_photo_an_upload_was_adding(engine: Engine) -> None:
    sessions = make_sessionmaker(engine)
    keep, other = _person_with_photo(sessions, "ada", 1), _person_with_photo(sessions, "ada-again", 2)

    def merge() -> int:
        with sessions.begin() as session:
            return people_store.merge_people(session, keep_id=keep, other_id=other, unused=[]).photo_count

    with ThreadPoolExecutor(max_workers=1) as pool, sessions.begin() as adding:
        _adding_a_photo(adding, other)
        racing = pool.submit(merge)
        wait_for(lambda: blocked_by(adding, engine), timeout=30, what="the merge to wait")
        adding.commit()  # the upload answered 201 with this photo's id
        assert racing.result(timeout=30) == 3

    with sessions() as session:
        assert [p.sha256[-1] for p in people_store.list_photos(session, person_id=keep)] == ["1", "2", "9"]


@POSTGRESQL_ONLY
def test_deleting_a_person_while_a_photo_is_added_names_that_photos_file_too(engine: Engine) -> None:
    sessions = make_sessionmaker(engine)
    person = _person_with_photo(sessions, "ada", 1)

    def delete() -> list[str]:
        with sessions.begin() as session:
            return people_store.delete_person(session, person_id=person)

    with ThreadPoolExecutor(max_workers=1) as pool, sessions.begin() as adding:
        _adding_a_photo(adding, person)
        racing = pool.submit(delete)
        wait_for(lambda: blocked_by(adding, engine), timeout=30, what="the delete to wait")
        adding.commit()
        assert sorted(racing.result(timeout=30)) == ["ada.jpg", "late.jpg"]


@POSTGRESQL_ONLY
def test_renaming_someone_being_deleted_finds_them_gone(engine: Engine) -> None:
    """Not SQLAlchemy's StaleDataError (a 500): the rename waits for the delete and then finds nobody."""
    sessions = make_sessionmaker(engine)
    person = _person_with_photo(sessions, "ada", 1)

    def rename() -> None:
        with sessions.begin() as session:
            people_store.update_person(session, person_id=person, changes={"name": "Ada L."})

    with ThreadPoolExecutor(max_workers=1) as pool, sessions.begin() as deleting:
        people_store.delete_person(deleting, person_id=person)
        racing = pool.submit(rename)
        wait_for(lambda: blocked_by(deleting, engine), timeout=30, what="the rename to wait")
        deleting.commit()
        with pytest.raises(NotFoundError):
            racing.result(timeout=30)


@POSTGRESQL_ONLY
def test_a_training_reads_one_snapshot_whatever_commits_meanwhile(engine: Engine) -> None:
    """A training reads photos, people and strangers in several statements: under PostgreSQL's READ
    COMMITTED a person deleted between them was in the photos and not in the people (the version
    failed with "KeyError: 17"). (On SQLite the training's transaction holds the write lock: no
    deletion can commit between its reads.)"""
    sessions = make_sessionmaker(engine)
    ada, bob = _person_with_photo(sessions, "ada", 1), _person_with_photo(sessions, "bob", 2)
    with sessions.begin() as training:
        read_one_snapshot(training)
        faces, _ = people_store.enrolled_faces(training, embedder="test")
        with sessions.begin() as deleting:
            people_store.delete_person(deleting, person_id=bob)
        _, people = people_store.enrolled_faces(training, embedder="test")
    assert {face.person_id for face in faces} == set(people) == {ada, bob}
