"""Strangers and their photos. Keyword-only functions over a session; records out, never rows.

A stranger is a face that must never be named: their embeddings reach training only as impostor
evidence. Nothing here is joined with people, so no listing of people, roster or label can hold one.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from faceforge.core.errors import ConflictError, NotFoundError
from faceforge.core.records import Stranger, StrangerPhoto
from faceforge.storage.tables import StrangerPhotoRow, StrangerRow, as_utc_required


def _stranger(row: StrangerRow, photo_count: int) -> Stranger:
    return Stranger(
        id=row.id,
        note=row.note,
        source=row.source,
        created_at=as_utc_required(row.created_at),
        photo_count=photo_count,
    )


def _photo(row: StrangerPhotoRow) -> StrangerPhoto:
    return StrangerPhoto(
        id=row.id,
        stranger_id=row.stranger_id,
        width=row.width,
        height=row.height,
        box=dict(row.box),
        score=row.score,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        created_at=as_utc_required(row.created_at),
    )


def _row(session: Session, stranger_id: int) -> StrangerRow:
    row = session.get(StrangerRow, stranger_id)
    if row is None:
        raise NotFoundError(f"stranger {stranger_id} not found")
    return row


def _count_photos(session: Session, stranger_id: int) -> int:
    query = select(func.count()).where(StrangerPhotoRow.stranger_id == stranger_id)
    return int(session.scalar(query) or 0)


def create_stranger(session: Session, *, note: str | None, source: str | None) -> int:
    if source is not None and session.scalar(select(StrangerRow.id).where(StrangerRow.source == source)):
        raise ConflictError(f"a stranger from {source!r} already exists")
    row = StrangerRow(note=note, source=source)
    session.add(row)
    try:
        session.flush()
    except IntegrityError as error:  # two imports racing past the check above
        raise ConflictError(f"a stranger from {source!r} already exists") from error
    return row.id


def add_photo(session: Session, *, stranger_id: int, stored_name: str, fields: dict[str, Any]) -> int:
    _row(session, stranger_id)
    row = StrangerPhotoRow(stranger_id=stranger_id, stored_name=stored_name, **fields)
    session.add(row)
    session.flush()
    return row.id


def get_stranger(session: Session, *, stranger_id: int) -> Stranger:
    return _stranger(_row(session, stranger_id), _count_photos(session, stranger_id))


def find_by_source(session: Session, *, source: str) -> Stranger | None:
    row = session.scalar(select(StrangerRow).where(StrangerRow.source == source))
    return None if row is None else _stranger(row, _count_photos(session, row.id))


def list_strangers(session: Session, *, offset: int, limit: int) -> tuple[list[Stranger], int]:
    """A page of strangers in id order, and how many there are."""
    total = int(session.scalar(select(func.count()).select_from(StrangerRow)) or 0)
    counts = (
        select(StrangerPhotoRow.stranger_id, func.count().label("n"))
        .group_by(StrangerPhotoRow.stranger_id)
        .subquery("counts")
    )
    rows = session.execute(
        select(StrangerRow, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.stranger_id == StrangerRow.id)
        .order_by(StrangerRow.id)
        .offset(offset)
        .limit(limit)
    ).all()
    return [_stranger(row, int(n)) for row, n in rows], total


def delete_stranger(session: Session, *, stranger_id: int) -> list[str]:
    """Delete the stranger and their photo rows; returns the stored file names to remove after commit.
    The lock first: an upload holds it until its photo is committed, which the names must include."""
    lock_stranger(session, stranger_id=stranger_id)
    row = _row(session, stranger_id)
    query = select(StrangerPhotoRow.stored_name).where(StrangerPhotoRow.stranger_id == stranger_id)
    names = list(session.scalars(query))
    session.delete(row)
    session.flush()
    return names


def delete_photo(session: Session, *, stranger_id: int, photo_id: int) -> str:
    """Delete one of the stranger's photo rows; returns its stored file name to remove after commit.
    Their only photo stays (``ConflictError``): a stranger is their photos, and one without any would
    sit in the list teaching nothing; deleting the stranger is the way to forget them."""
    lock_stranger(session, stranger_id=stranger_id)  # two deletes at once cannot take the last two
    row = session.get(StrangerPhotoRow, photo_id)
    if row is None or row.stranger_id != stranger_id:
        raise NotFoundError(f"photo {photo_id} of stranger {stranger_id} not found")
    if _count_photos(session, stranger_id) <= 1:
        raise ConflictError(
            f"photo {photo_id} is stranger {stranger_id}'s only photo: delete the stranger instead "
            f"(DELETE /api/v1/strangers/{stranger_id})"
        )
    name = row.stored_name
    session.delete(row)
    session.flush()
    return name


def list_photos(session: Session, *, stranger_id: int) -> list[StrangerPhoto]:
    _row(session, stranger_id)
    rows = session.scalars(
        select(StrangerPhotoRow)
        .where(StrangerPhotoRow.stranger_id == stranger_id)
        .order_by(StrangerPhotoRow.id)
    )
    return [_photo(row) for row in rows]


def photo_file(session: Session, *, stranger_id: int, photo_id: int) -> tuple[str, str]:
    row = session.get(StrangerPhotoRow, photo_id)
    if row is None or row.stranger_id != stranger_id:
        raise NotFoundError(f"photo {photo_id} of stranger {stranger_id} not found")
    return row.stored_name, row.content_type


def photo_hashes(session: Session, *, stranger_id: int) -> set[str]:
    query = select(StrangerPhotoRow.sha256).where(StrangerPhotoRow.stranger_id == stranger_id)
    return set(session.scalars(query))


def photo_ids_by_sha256(session: Session, *, stranger_id: int) -> dict[str, int]:
    """The stranger's stored photos' ids by their files' sha256 (the earliest photo for each)."""
    rows = session.execute(
        select(StrangerPhotoRow.sha256, StrangerPhotoRow.id)
        .where(StrangerPhotoRow.stranger_id == stranger_id)
        .order_by(StrangerPhotoRow.id.desc())
    ).all()
    return {digest: photo_id for digest, photo_id in rows}


def strangers_with_photos(session: Session, digests: list[str]) -> dict[str, int]:
    """Of ``digests``, those a stranger's stored photo has, with the earliest such stranger's id."""
    if not digests:
        return {}
    rows = session.execute(
        select(StrangerPhotoRow.sha256, StrangerPhotoRow.stranger_id)
        .where(StrangerPhotoRow.sha256.in_(set(digests)))
        .order_by(StrangerPhotoRow.stranger_id.desc())
    ).all()
    return {digest: stranger_id for digest, stranger_id in rows}


def lock_stranger(session: Session, *, stranger_id: int) -> None:
    """Lock the stranger's row until the transaction ends (``NotFoundError`` if they are gone)."""
    found = session.scalar(select(StrangerRow.id).where(StrangerRow.id == stranger_id).with_for_update())
    if found is None:
        raise NotFoundError(f"stranger {stranger_id} not found")


def all_photo_hashes(session: Session) -> set[str]:
    """The sha256 of every stranger's photo (how an import recognises a loose photo it stored)."""
    return set(session.scalars(select(StrangerPhotoRow.sha256)))


def stranger_embeddings(session: Session, *, stranger_id: int, embedder: str) -> list[bytes]:
    query = select(StrangerPhotoRow.embedding).where(
        StrangerPhotoRow.stranger_id == stranger_id, StrangerPhotoRow.embedder == embedder
    )
    return list(session.scalars(query))


def embeddings_by_stranger(session: Session, *, embedder: str) -> list[list[bytes]]:
    """Every stranger's stored embeddings of ``embedder`` (little-endian float32 bytes), one list per
    stranger with at least one, in id order: what training takes as impostor evidence."""
    rows = session.execute(
        select(StrangerPhotoRow.stranger_id, StrangerPhotoRow.embedding)
        .where(StrangerPhotoRow.embedder == embedder)
        .order_by(StrangerPhotoRow.stranger_id, StrangerPhotoRow.id)
    ).all()
    grouped: dict[int, list[bytes]] = defaultdict(list)
    for stranger_id, embedding in rows:
        grouped[stranger_id].append(embedding)
    return list(grouped.values())


def embeddings_with_strangers(session: Session, *, embedder: str) -> list[tuple[int, bytes]]:
    """``(stranger id, embedding)`` of every stored stranger photo of ``embedder``."""
    rows = session.execute(
        select(StrangerPhotoRow.stranger_id, StrangerPhotoRow.embedding).where(
            StrangerPhotoRow.embedder == embedder
        )
    ).all()
    return [(int(stranger_id), bytes(embedding)) for stranger_id, embedding in rows]


def stale_photos(session: Session, *, embedder: str) -> list[tuple[int, str, dict[str, Any]]]:
    """``(photo id, stored file name, box)`` of every stranger's photo embedded by another embedder."""
    rows = session.execute(
        select(StrangerPhotoRow.id, StrangerPhotoRow.stored_name, StrangerPhotoRow.box)
        .where(StrangerPhotoRow.embedder != embedder)
        .order_by(StrangerPhotoRow.id)
    ).all()
    return [(photo_id, name, box) for photo_id, name, box in rows]


def replace_embedding(session: Session, *, photo_id: int, embedder: str, embedding: bytes) -> None:
    """Store a stranger photo's new embedding; a photo deleted meanwhile is skipped."""
    session.execute(
        update(StrangerPhotoRow)
        .where(StrangerPhotoRow.id == photo_id)
        .values(embedder=embedder, embedding=embedding)
    )


def stored_names(session: Session) -> set[str]:
    """Every stranger photo's stored file name (what the orphan sweep keeps)."""
    return set(session.scalars(select(StrangerPhotoRow.stored_name)))
