"""Records the data layer returns: plain, immutable, with no ORM attached."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    name: str
    position: str | None
    external_id: str | None
    created_at: datetime
    updated_at: datetime
    photo_count: int


@dataclass(frozen=True, slots=True)
class StoredPhoto:
    id: int
    person_id: int
    width: int
    height: int
    box: dict[str, float]
    score: float
    content_type: str
    size_bytes: int
    sha256: str
    created_at: datetime


class VersionStatus(StrEnum):
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"
    PRUNED = "pruned"  # was ready; its files were deleted by the retention policy


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """What the database says of a version: that it exists, its status and times, whether it is current.
    What the version holds (roster, threshold, metrics, files) is in its ``manifest.json`` alone
    (``storage.version_store.VersionStore.published``)."""

    version: int
    status: VersionStatus
    status_message: str | None
    created_at: datetime
    finished_at: datetime | None
    embedder: str | None  # the embedder the training was claimed for (a manifest may not exist yet)
    is_current: bool = False


class TrainingState(StrEnum):
    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"


@dataclass(frozen=True, slots=True)
class TrainingStatus:
    state: TrainingState
    requested: int
    built: int
    building_version: int | None
    progress: float
    stage: str | None
    current_version: int | None
    last_success_version: int | None
    last_success_at: datetime | None
    last_failure_version: int | None
    last_failure_at: datetime | None
    last_failure_message: str | None
    # Read only while a request waits (state queued): whether a training worker runs for this
    # database (``storage.trainer_presence``); ``None`` otherwise, or where it cannot be known.
    trainer_running: bool | None = None


@dataclass(frozen=True, slots=True)
class TrainingClaim:
    """What a worker owns after claiming a training: the version it builds and the requests it covers."""

    version: int
    target: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class EnrolledFace:
    person_id: int
    embedding: bytes


@dataclass(frozen=True, slots=True)
class Stranger:
    """Someone never to be named (see ``storage.strangers_store``)."""

    id: int
    note: str | None
    source: str | None  # the import's folder name or loose photo's sha256; None when added by hand
    created_at: datetime
    photo_count: int


@dataclass(frozen=True, slots=True)
class StrangerPhoto:
    id: int
    stranger_id: int
    width: int
    height: int
    box: dict[str, float]
    score: float
    content_type: str
    size_bytes: int
    sha256: str
    created_at: datetime
