"""ORM tables. Rows never leave the data layer: repositories convert them to domain records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands timezone-aware columns back naive; every timestamp we store is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def as_utc_required(moment: datetime) -> datetime:
    result = as_utc(moment)
    assert result is not None
    return result


class Base(DeclarativeBase):
    pass


# Widths of the text columns clients fill: names, positions and notes; keys (external ids, sources),
# which are indexed. Changing one needs a migration; the services cap their length limits at them.
# Ids are 32-bit in PostgreSQL (and must fit SQLite's 64-bit integers): anything larger names nothing.
MAX_ID = 2**31 - 1
TEXT_WIDTH = 500
KEY_WIDTH = 200
COLUMN_WIDTHS = {
    "name": TEXT_WIDTH,
    "position": TEXT_WIDTH,
    "note": TEXT_WIDTH,
    "external_id": KEY_WIDTH,
    "source": KEY_WIDTH,
}


class PersonRow(Base):
    __tablename__ = "people"
    # Ids are never given again (a deleted person's id would otherwise go to the next one, and
    # versions name people by id); PostgreSQL's sequences behave so already.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    external_id: Mapped[str | None] = mapped_column(String(KEY_WIDTH), unique=True, nullable=True)
    name: Mapped[str] = mapped_column(String(TEXT_WIDTH))
    position: Mapped[str | None] = mapped_column(String(TEXT_WIDTH), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    photos: Mapped[list[PhotoRow]] = relationship(
        back_populates="person", cascade="all, delete-orphan", passive_deletes=True, order_by="PhotoRow.id"
    )


class PhotoRow(Base):
    """An accepted enrolment photo and its one face (box, landmarks, embedding)."""

    __tablename__ = "photos"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    stored_name: Mapped[str] = mapped_column(String(100))  # our own file name; never the client's
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(50))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    box: Mapped[dict[str, Any]] = mapped_column(JSON)
    landmarks: Mapped[list[Any]] = mapped_column(JSON)
    score: Mapped[float] = mapped_column(Float)
    embedder: Mapped[str] = mapped_column(String(100))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    person: Mapped[PersonRow] = relationship(back_populates="photos")


class StrangerRow(Base):
    """Someone who must never be named: their faces are impostor evidence for the head, nothing more.

    Kept apart from ``people`` so that no query over people (listings, rosters, labels, compat
    subjects) can ever return one."""

    __tablename__ = "strangers"
    __table_args__ = ({"sqlite_autoincrement": True},)  # ids never given again, as people's

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # What the admin knows about them ("the mailman"); never part of any model. The folder's name for
    # `faceforge import --strangers` (unique, so an import resumes), or a loose photo's sha256.
    note: Mapped[str | None] = mapped_column(String(TEXT_WIDTH), nullable=True)
    source: Mapped[str | None] = mapped_column(String(KEY_WIDTH), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    photos: Mapped[list[StrangerPhotoRow]] = relationship(
        back_populates="stranger",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="StrangerPhotoRow.id",
    )


class StrangerPhotoRow(Base):
    """A stranger's photo and its one face, described as an enrolment photo is (``PhotoRow``)."""

    __tablename__ = "stranger_photos"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stranger_id: Mapped[int] = mapped_column(ForeignKey("strangers.id", ondelete="CASCADE"), index=True)
    stored_name: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(50))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    box: Mapped[dict[str, Any]] = mapped_column(JSON)
    landmarks: Mapped[list[Any]] = mapped_column(JSON)
    score: Mapped[float] = mapped_column(Float)
    embedder: Mapped[str] = mapped_column(String(100))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    stranger: Mapped[StrangerRow] = relationship(back_populates="photos")


class TrainingStateRow(Base):
    """The single row (id 1) that coordinates training across every worker process.

    ``requested`` counts changes that affect recognition; ``built`` is the ``requested`` value the last
    successful training covered. A worker claims a training by locking this row, so only one runs.
    """

    __tablename__ = "training_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requested: Mapped[int] = mapped_column(Integer, default=0)
    built: Mapped[int] = mapped_column(Integer, default=0)
    running_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    running_target: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str | None] = mapped_column(String(50), nullable=True)
    current_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_success_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_failure_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_failure_message: Mapped[str | None] = mapped_column(Text, nullable=True)


class ModelVersionRow(Base):
    """Which versions exist, their status and times; which one is current is ``training_state``'s."""

    __tablename__ = "model_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(20))
    status_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    target: Mapped[int] = mapped_column(Integer)  # training_state.requested value it covers
    worker_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # Recorded when the training is claimed: a building or failed version has no manifest, and the
    # listing still says which embedder it was built for. Nothing of what the version holds (roster,
    # threshold, metrics, files) is kept here: its manifest.json is the one place (revision 0004).
    embedder: Mapped[str | None] = mapped_column(String(100), nullable=True)
