"""People and their enrolment photos. Keyword-only functions over a session; records out, never rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from faceforge.core.errors import ConflictError, NotFoundError
from faceforge.core.records import EnrolledFace, Person, StoredPhoto
from faceforge.storage.tables import PersonRow, PhotoRow, TrainingStateRow, as_utc_required


def _person(row: PersonRow, photo_count: int) -> Person:
    return Person(
        id=row.id,
        name=row.name,
        position=row.position,
        external_id=row.external_id,
        created_at=as_utc_required(row.created_at),
        updated_at=as_utc_required(row.updated_at),
        photo_count=photo_count,
    )


def _photo(row: PhotoRow) -> StoredPhoto:
    return StoredPhoto(
        id=row.id,
        person_id=row.person_id,
        width=row.width,
        height=row.height,
        box=dict(row.box),
        score=row.score,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        created_at=as_utc_required(row.created_at),
    )


def _count_photos(session: Session, person_id: int) -> int:
    return int(session.scalar(select(func.count()).where(PhotoRow.person_id == person_id)) or 0)


def _row(session: Session, person_id: int) -> PersonRow:
    row = session.get(PersonRow, person_id)
    if row is None:
        raise NotFoundError(f"person {person_id} not found")
    return row


def _check_external_id(session: Session, external_id: str | None, *, except_id: int | None = None) -> None:
    if external_id is None:
        return
    clash = session.scalar(select(PersonRow.id).where(PersonRow.external_id == external_id))
    if clash is not None and clash != except_id:
        raise ConflictError(f"external_id {external_id!r} already belongs to person {clash}")


def _flush_unique_external_id(session: Session, external_id: str | None) -> None:
    """Flush; two registrations racing past ``_check_external_id`` meet the unique index here."""
    try:
        session.flush()
    except IntegrityError as error:
        if external_id is None:
            raise
        raise ConflictError(f"external_id {external_id!r} already belongs to another person") from error


def create_person(session: Session, *, name: str, position: str | None, external_id: str | None) -> int:
    _check_external_id(session, external_id)
    row = PersonRow(name=name, position=position, external_id=external_id)
    session.add(row)
    _flush_unique_external_id(session, external_id)
    return row.id


def add_photo(session: Session, *, person_id: int, stored_name: str, fields: dict[str, Any]) -> int:
    _row(session, person_id)
    row = PhotoRow(person_id=person_id, stored_name=stored_name, **fields)
    session.add(row)
    session.flush()
    return row.id


def get_person(session: Session, *, person_id: int) -> Person:
    return _person(_row(session, person_id), _count_photos(session, person_id))


def list_people(
    session: Session, *, offset: int, limit: int, search: str | None = None
) -> tuple[list[Person], int]:
    """A page of people in id order; ``search`` keeps those whose name contains it (any case)."""
    matching = select(PersonRow.id)
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matching = matching.where(func.lower(PersonRow.name).like(f"%{escaped}%", escape="\\"))
    total = int(session.scalar(select(func.count()).select_from(matching.subquery())) or 0)
    counts = (
        select(PhotoRow.person_id, func.count().label("n")).group_by(PhotoRow.person_id).subquery("counts")
    )
    rows = session.execute(
        select(PersonRow, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.person_id == PersonRow.id)
        .where(PersonRow.id.in_(matching))
        .order_by(PersonRow.id)
        .offset(offset)
        .limit(limit)
    ).all()
    return [_person(row, int(n)) for row, n in rows], total


def find_by_external_id(session: Session, *, external_id: str) -> Person | None:
    row = session.scalar(select(PersonRow).where(PersonRow.external_id == external_id))
    return None if row is None else _person(row, _count_photos(session, row.id))


def photo_hashes(session: Session, *, person_id: int) -> set[str]:
    """The sha256 of every stored photo of the person (what a bulk import skips)."""
    return set(photo_ids_by_sha256(session, person_id=person_id))


def photo_ids_by_sha256(session: Session, *, person_id: int) -> dict[str, int]:
    """The person's stored photos' ids by their files' sha256 (the earliest photo for each)."""
    rows = session.execute(
        select(PhotoRow.sha256, PhotoRow.id)
        .where(PhotoRow.person_id == person_id)
        .order_by(PhotoRow.id.desc())
    ).all()
    return {digest: photo_id for digest, photo_id in rows}


def photo_score(session: Session, *, photo_id: int) -> float | None:
    """How surely the stored photo's face was detected; None for no such photo."""
    return session.execute(select(PhotoRow.score).where(PhotoRow.id == photo_id)).scalar_one_or_none()


def people_with_photos(session: Session, digests: list[str]) -> dict[str, tuple[int, str]]:
    """Of ``digests``, those a person's stored photo has: (person id, name) of the earliest such person."""
    if not digests:
        return {}
    rows = session.execute(
        select(PhotoRow.sha256, PersonRow.id, PersonRow.name)
        .join(PersonRow, PersonRow.id == PhotoRow.person_id)
        .where(PhotoRow.sha256.in_(set(digests)))
        .order_by(PersonRow.id.desc())
    ).all()
    return {digest: (person_id, name) for digest, person_id, name in rows}


def faces_with_photos(
    session: Session, digests: list[str], *, embedder: str
) -> list[tuple[str, int, str, bytes | None]]:
    """Every stored person's photo whose file has one of ``digests``: (sha256, person id, name, the
    embedding of the face taken from it by ``embedder``, None while it is embedded again)."""
    if not digests:
        return []
    rows = session.execute(
        select(PhotoRow.sha256, PersonRow.id, PersonRow.name, PhotoRow.embedding, PhotoRow.embedder)
        .join(PersonRow, PersonRow.id == PhotoRow.person_id)
        .where(PhotoRow.sha256.in_(set(digests)))
        .order_by(PhotoRow.id)
    ).all()
    return [
        (digest, person_id, name, embedding if used == embedder else None)
        for digest, person_id, name, embedding, used in rows
    ]


def lock_person(session: Session, *, person_id: int) -> None:
    """Lock the person's row until the transaction ends (``NotFoundError`` if they are gone), so
    concurrent changes to one person's photos take turns on PostgreSQL too."""
    _lock_people(session, [person_id])


def _lock_people(session: Session, person_ids: list[int]) -> None:
    """Lock these people's rows in id order (two merges of the same pair cannot deadlock). Every change
    to a person takes the lock before reading their photos: an upload holds it until its photo is
    committed, and under READ COMMITTED a merge or delete that read first would not see that photo,
    whose row the cascade would then take with its file left behind."""
    query = select(PersonRow.id).where(PersonRow.id.in_(person_ids)).order_by(PersonRow.id).with_for_update()
    found = set(session.scalars(query))
    for person_id in person_ids:
        if person_id not in found:
            raise NotFoundError(f"person {person_id} not found")


def update_person(session: Session, *, person_id: int, changes: dict[str, str | None]) -> Person:
    lock_person(session, person_id=person_id)  # a delete racing it: not found, not a stale update
    row = _row(session, person_id)
    if "external_id" in changes:
        _check_external_id(session, changes["external_id"], except_id=person_id)
    for key, value in changes.items():
        setattr(row, key, value)
    _flush_unique_external_id(session, changes.get("external_id"))
    return _person(row, _count_photos(session, person_id))


def delete_person(session: Session, *, person_id: int) -> list[str]:
    """Delete the person and their photo rows; returns the stored file names to remove after commit."""
    lock_person(session, person_id=person_id)
    row = _row(session, person_id)
    names = list(session.scalars(select(PhotoRow.stored_name).where(PhotoRow.person_id == person_id)))
    session.delete(row)
    session.flush()
    return names


def list_photos(session: Session, *, person_id: int) -> list[StoredPhoto]:
    _row(session, person_id)
    rows = session.scalars(select(PhotoRow).where(PhotoRow.person_id == person_id).order_by(PhotoRow.id))
    return [_photo(row) for row in rows]


def delete_photo(session: Session, *, person_id: int, photo_id: int) -> str:
    lock_person(session, person_id=person_id)  # a bulk delete of their photos takes turns with it
    row = session.get(PhotoRow, photo_id)
    if row is None or row.person_id != person_id:
        raise NotFoundError(f"photo {photo_id} of person {person_id} not found")
    name = row.stored_name
    session.delete(row)
    session.flush()
    return name


def first_photo(session: Session, *, person_id: int) -> StoredPhoto | None:
    """The person's earliest stored photo (their picture in lists), or ``None``."""
    _row(session, person_id)
    row = session.scalar(
        select(PhotoRow).where(PhotoRow.person_id == person_id).order_by(PhotoRow.id).limit(1)
    )
    return None if row is None else _photo(row)


def photo_file(session: Session, *, person_id: int, photo_id: int) -> tuple[str, str]:
    row = session.get(PhotoRow, photo_id)
    if row is None or row.person_id != person_id:
        raise NotFoundError(f"photo {photo_id} of person {person_id} not found")
    return row.stored_name, row.content_type


def enrolled_faces(session: Session, *, embedder: str) -> tuple[list[EnrolledFace], dict[int, Person]]:
    """Every stored embedding of ``embedder`` with the people they belong to (a consistent snapshot)."""
    rows = session.execute(
        select(PhotoRow.person_id, PhotoRow.embedding)
        .where(PhotoRow.embedder == embedder)
        .order_by(PhotoRow.id)
    ).all()
    faces = [EnrolledFace(person_id, embedding) for person_id, embedding in rows]
    ids = {face.person_id for face in faces}
    people = {
        row.id: _person(row, 0) for row in session.scalars(select(PersonRow).where(PersonRow.id.in_(ids)))
    }
    return faces, people


def faces_with_names(session: Session, *, embedder: str) -> list[tuple[int, str, bytes]]:
    """``(person id, name, embedding)`` of every stored photo of ``embedder``, in one statement (two
    statements saw a person deleted in between: a face without a name)."""
    rows = session.execute(
        select(PhotoRow.person_id, PersonRow.name, PhotoRow.embedding)
        .join(PersonRow, PersonRow.id == PhotoRow.person_id)
        .where(PhotoRow.embedder == embedder)
    ).all()
    return [(int(person_id), str(name), bytes(embedding)) for person_id, name, embedding in rows]


def first_photos(session: Session, *, embedder: str, limit: int) -> list[tuple[int, int, str]]:
    """``(person_id, photo_id, stored_name)`` of the first photo of each of the first ``limit`` people
    (by id) with a photo embedded by ``embedder``: the version's contract vectors."""
    firsts = (
        select(func.min(PhotoRow.id))
        .where(PhotoRow.embedder == embedder)
        .group_by(PhotoRow.person_id)
        .order_by(PhotoRow.person_id)
        .limit(limit)
    )
    rows = session.execute(
        select(PhotoRow.person_id, PhotoRow.id, PhotoRow.stored_name)
        .where(PhotoRow.id.in_(firsts))
        .order_by(PhotoRow.person_id)
    ).all()
    return [(int(person_id), int(photo_id), str(name)) for person_id, photo_id, name in rows]


def photo_geometry(
    session: Session, *, embedder: str
) -> list[tuple[int, int, str, dict[str, Any], list[list[float]], int, int]]:
    """``(person_id, photo_id, stored_name, box, landmarks, width, height)`` of every photo embedded by
    ``embedder``: where each enrolled face sits in its photo (the contract vectors' choice)."""
    rows = session.execute(
        select(
            PhotoRow.person_id,
            PhotoRow.id,
            PhotoRow.stored_name,
            PhotoRow.box,
            PhotoRow.landmarks,
            PhotoRow.width,
            PhotoRow.height,
        )
        .where(PhotoRow.embedder == embedder)
        .order_by(PhotoRow.id)
    ).all()
    return [(int(a), int(b), str(c), dict(d), list(e), int(f), int(g)) for a, b, c, d, e, f, g in rows]


def request_training(session: Session) -> int:
    """Record one change that affects recognition, in the caller's transaction; returns the new count."""
    session.execute(
        update(TrainingStateRow)
        .where(TrainingStateRow.id == 1)
        .values(requested=TrainingStateRow.requested + 1)
    )
    return int(session.scalar(select(TrainingStateRow.requested).where(TrainingStateRow.id == 1)) or 0)


def merge_people(session: Session, *, keep_id: int, other_id: int, unused: list[str]) -> Person:
    """Move every photo of ``other_id`` to ``keep_id`` and delete ``other_id`` (the same person
    registered twice). The kept person's name, position and external id stay; the other's external id
    is taken over only when the kept person has none. A photo of the other's whose bytes the kept
    person has already is dropped, not moved, its file's name put in ``unused`` (to be removed once
    this commits): moved, the kept person had it twice, counted and trained twice, which an upload of
    it is refused to prevent (a tester merged two people named for one photo)."""
    if keep_id == other_id:
        raise ConflictError("a person cannot be merged with themselves")
    _lock_people(session, [keep_id, other_id])
    keep, other = _row(session, keep_id), _row(session, other_id)
    kept = select(PhotoRow.sha256).where(PhotoRow.person_id == keep_id)
    copies = session.execute(
        select(PhotoRow.id, PhotoRow.stored_name).where(
            PhotoRow.person_id == other_id, PhotoRow.sha256.in_(kept)
        )
    ).all()
    if copies:
        session.execute(delete(PhotoRow).where(PhotoRow.id.in_([photo_id for photo_id, _ in copies])))
        unused.extend(name for _, name in copies)
    session.execute(update(PhotoRow).where(PhotoRow.person_id == other_id).values(person_id=keep_id))
    external_id = other.external_id
    session.delete(other)
    session.flush()  # the other's external id is free before the kept person takes it
    if keep.external_id is None and external_id is not None:
        keep.external_id = external_id
    session.flush()
    return _person(keep, _count_photos(session, keep_id))


def person_embeddings(session: Session, *, person_id: int, embedder: str) -> list[bytes]:
    """The stored embeddings (little-endian float32 bytes) of a person's photos, for ``embedder``."""
    query = select(PhotoRow.embedding).where(PhotoRow.person_id == person_id, PhotoRow.embedder == embedder)
    return list(session.scalars(query))


def stale_photos(session: Session, *, embedder: str) -> list[tuple[int, str, dict[str, Any]]]:
    """``(photo id, stored file name, box)`` of every photo embedded by another embedder than
    ``embedder`` (an older release's), to be embedded again from its file."""
    rows = session.execute(
        select(PhotoRow.id, PhotoRow.stored_name, PhotoRow.box)
        .where(PhotoRow.embedder != embedder)
        .order_by(PhotoRow.id)
    ).all()
    return [(photo_id, name, box) for photo_id, name, box in rows]


def replace_embedding(session: Session, *, photo_id: int, embedder: str, embedding: bytes) -> None:
    """Store a photo's new embedding; a photo deleted meanwhile is skipped."""
    session.execute(
        update(PhotoRow).where(PhotoRow.id == photo_id).values(embedder=embedder, embedding=embedding)
    )


# The advisory-lock key space of names (PostgreSQL's two-key form, apart from the one-key locks).
NAME_LOCK_SPACE = 0x6E616D65


def lock_name(session: Session, *, name: str) -> None:
    """Hold off, until this transaction ends, every other writer that locks the same name: looking a
    person up by name and creating them when missing is then one step. SQLite's write transactions
    are serialised already (they begin with the write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, hashtext(:name))"),
            {"space": NAME_LOCK_SPACE, "name": name},
        )


# The key space of photo digests: one photo stored for a person and a stranger, or for two strangers,
# by requests running at once.
PHOTO_LOCK_SPACE = 0x70686F74


def lock_photos(session: Session, digests: list[str]) -> None:
    """Hold off, until this transaction ends, every other writer that locks one of these photos
    (sha256): which collection holds a photo can then be read and the photo stored in one step.
    Every writer locks its photos first, by key in ascending order (a key is the digest's first 32
    bits, so two digests that share one are locked once, in the same place for everyone): two
    writers of the same photos never wait for each other. SQLite's write transactions are serialised
    already."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted({int(digest[:8], 16) - 2**31 for digest in digests}):
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key)"), {"space": PHOTO_LOCK_SPACE, "key": key}
        )


def find_by_name(session: Session, *, name: str) -> Person | None:
    """The earliest-registered person with exactly this name (names need not be unique)."""
    row = session.scalar(select(PersonRow).where(PersonRow.name == name).order_by(PersonRow.id).limit(1))
    return None if row is None else _person(row, _count_photos(session, row.id))


def all_people(session: Session) -> list[Person]:
    rows = session.execute(select(PersonRow).order_by(PersonRow.id)).scalars().all()
    return [_person(row, 0) for row in rows]


def photos_page(
    session: Session, *, person_id: int | None, offset: int, limit: int
) -> tuple[list[tuple[int, str]], int]:
    """``(photo id, person name)`` of stored photos in id order (one person's, or everyone's)."""
    query = select(PhotoRow.id, PersonRow.name).join(PersonRow, PersonRow.id == PhotoRow.person_id)
    count = select(func.count()).select_from(PhotoRow)
    if person_id is not None:
        query = query.where(PhotoRow.person_id == person_id)
        count = count.where(PhotoRow.person_id == person_id)
    rows = session.execute(query.order_by(PhotoRow.id).offset(offset).limit(limit)).all()
    return [(photo_id, name) for photo_id, name in rows], int(session.scalar(count) or 0)


def photo_owner(session: Session, *, photo_id: int) -> tuple[int, str] | None:
    """``(person id, person name)`` of a stored photo, or ``None``."""
    row = session.execute(
        select(PersonRow.id, PersonRow.name)
        .join(PhotoRow, PhotoRow.person_id == PersonRow.id)
        .where(PhotoRow.id == photo_id)
    ).first()
    return None if row is None else (int(row[0]), str(row[1]))


def photo_embedding(session: Session, *, photo_id: int, embedder: str) -> bytes | None:
    return session.scalar(
        select(PhotoRow.embedding).where(PhotoRow.id == photo_id, PhotoRow.embedder == embedder)
    )


# PostgreSQL takes at most 65,535 parameters in one statement.
ID_CHUNK = 10_000


def names_of(session: Session, ids: list[int]) -> dict[int, str]:
    """The current names of those of ``ids`` still enrolled."""
    found: dict[int, str] = {}
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK]
        rows = session.execute(select(PersonRow.id, PersonRow.name).where(PersonRow.id.in_(chunk)))
        found.update((person_id, name) for person_id, name in rows)  # a Result has keys(): not a mapping
    return found


def existing_people(session: Session, ids: list[int]) -> set[int]:
    """Which of ``ids`` are people still enrolled (versions name people by id; ids are never given
    again, so an id missing here is someone deleted or merged into another)."""
    found: set[int] = set()
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK]
        found.update(session.scalars(select(PersonRow.id).where(PersonRow.id.in_(chunk))))
    return found
