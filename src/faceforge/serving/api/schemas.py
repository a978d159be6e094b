"""Response and request schemas per resource; built from domain records, never from ORM rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from faceforge.core.records import Person, StoredPhoto, TrainingStatus
from faceforge.serving.services.identify import IdentifiedFace
from faceforge.serving.services.models import ModelView
from faceforge.serving.services.people import ChangeResult, PhotoVerdict


class PersonBase(BaseModel):
    name: str
    position: str | None = None
    external_id: str | None = None


class PersonUpdate(BaseModel):
    # Strict: a number or an object is not a name (lax mode would store `{'a': 1}` as one).
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str | None = Field(None, description="new name (cannot be empty)")
    position: str | None = None
    external_id: str | None = None


class MergeRequest(BaseModel):
    # Strict: `true` is not person 1, nor is "1" or 1.0.
    model_config = ConfigDict(extra="forbid", strict=True)
    other_id: int = Field(ge=1, le=2**31 - 1, description="the person to merge into this one (deleted)")


class PersonPublic(PersonBase):
    id: int
    photo_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, person: Person) -> PersonPublic:
        return cls(
            id=person.id,
            name=person.name,
            position=person.position,
            external_id=person.external_id,
            photo_count=person.photo_count,
            created_at=person.created_at,
            updated_at=person.updated_at,
        )


class PhotoVerdictPublic(BaseModel):
    index: int
    filename: str | None
    verdict: str
    reasons: list[str]
    message: str | None
    photo_id: int | None
    box: dict[str, float] | None
    score: float | None

    @classmethod
    def of(cls, verdict: PhotoVerdict) -> PhotoVerdictPublic:
        return cls(
            index=verdict.index,
            filename=verdict.filename,
            verdict="accepted" if verdict.accepted else "rejected",
            reasons=verdict.reasons,
            message=verdict.message,
            photo_id=verdict.photo_id,
            box=verdict.box,
            score=verdict.score,
        )


class TrainingRequestPublic(BaseModel):
    request: int = Field(description="the training request counter after this change")
    status_url: str = "/api/v1/training"


class SuspectedDuplicatePublic(BaseModel):
    person_id: int = Field(description="the other person")
    name: str
    similarity: float
    kind: str = Field(description="`person`: registered twice; `photo`: a photo filed under the wrong person")
    version: int = Field(description="the model version that found it")


class PersonDetailPublic(PersonPublic):
    suspected_duplicates: list[SuspectedDuplicatePublic] = Field(
        default_factory=list, description="from the current version; merge with POST .../merge"
    )


class PersonChangePublic(PersonPublic):
    photos: list[PhotoVerdictPublic]
    training: TrainingRequestPublic | None

    @classmethod
    def of_change(cls, result: ChangeResult) -> PersonChangePublic:
        assert result.person is not None
        base = PersonPublic.of(result.person).model_dump()
        training = (
            None
            if result.training_requested is None
            else TrainingRequestPublic(request=result.training_requested)
        )
        return cls(**base, photos=[PhotoVerdictPublic.of(v) for v in result.photos], training=training)


class PeoplePage(BaseModel):
    items: list[PersonPublic]
    total: int
    offset: int
    limit: int


class StoredPhotoPublic(BaseModel):
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

    @classmethod
    def of(cls, photo: StoredPhoto) -> StoredPhotoPublic:
        return cls(**{name: getattr(photo, name) for name in cls.model_fields})


class ModelVersionPublic(BaseModel):
    version: int
    status: str
    status_message: str | None
    created_at: datetime
    finished_at: datetime | None
    is_current: bool
    embedder: str | None
    threshold: float | None
    calibration: dict[str, Any]
    people: list[dict[str, Any]]
    deleted_people: list[int] | None = Field(
        description="ids of the people it names who were deleted or merged since: such a version "
        "cannot be made current (409 names_deleted_people). Listed by GET /models and "
        "/models/{version}; null elsewhere (the current version, an activation's answer): not "
        "checked there"
    )
    metrics: dict[str, Any]
    files: dict[str, Any]

    @classmethod
    def of(cls, model: ModelView) -> ModelVersionPublic:
        """The database's record and, for a ready version, what its manifest says (``ModelView``)."""
        return cls(**{name: getattr(model, name) for name in cls.model_fields})


class ModelList(BaseModel):
    items: list[ModelVersionPublic]
    total: int
    offset: int
    limit: int


NO_TRAINER = (
    "no training worker is running for this database: start one with the command faceforge worker "
    "(serve --workers N, N above 1, trains nothing itself)"
)


class TrainingPublic(BaseModel):
    state: str
    building_version: int | None
    progress: float
    stage: str | None
    requested: int
    built: int
    current_version: int | None
    last_success: dict[str, Any] | None
    last_failure: dict[str, Any] | None
    trainer_running: bool | None = Field(
        description="while a request is queued: whether a training worker runs for this database "
        "(none does under `serve --workers N` until `faceforge worker` starts); null otherwise"
    )
    message: str | None = Field(description="why a queued request is not being built, in words")

    @classmethod
    def of(cls, status: TrainingStatus) -> TrainingPublic:
        return cls(
            state=status.state,
            building_version=status.building_version,
            progress=status.progress,
            stage=status.stage,
            requested=status.requested,
            built=status.built,
            current_version=status.current_version,
            trainer_running=status.trainer_running,
            message=NO_TRAINER if status.trainer_running is False else None,
            last_success=None
            if status.last_success_version is None
            else {"version": status.last_success_version, "at": status.last_success_at},
            last_failure=None
            if status.last_failure_version is None
            else {
                "version": status.last_failure_version,
                "at": status.last_failure_at,
                "message": status.last_failure_message,
            },
        )


class IdentityPublic(BaseModel):
    person_id: int
    name: str
    position: str | None
    similarity: float
    confidence: float


class IdentifiedFacePublic(BaseModel):
    box: dict[str, float]
    score: float
    match: IdentityPublic | None
    candidates: list[IdentityPublic]

    @classmethod
    def of(cls, face: IdentifiedFace) -> IdentifiedFacePublic:
        return cls(
            box=face.box,
            score=face.score,
            match=None if face.match is None else IdentityPublic(**face.match),
            candidates=[IdentityPublic(**c) for c in face.candidates],
        )


class IdentifyResult(BaseModel):
    version: int
    faces: list[IdentifiedFacePublic]
