"""Schemas of /api/v1/strangers; built from domain records. A stranger has no name by design."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from faceforge.core.records import Stranger, StrangerPhoto
from faceforge.serving.api.schemas import PhotoVerdictPublic, TrainingRequestPublic
from faceforge.serving.services.strangers import StrangerChange

PREFIX = "/api/v1/strangers"


class StrangerPublic(BaseModel):
    id: int
    note: str | None = Field(description="the admin's own words about them; part of no model")
    source: str | None = Field(description="where `faceforge import --strangers` took them from")
    photo_count: int
    created_at: datetime
    thumbnail_url: str | None = Field(
        None, description="their face (JPEG), for admin keys only: it is a face"
    )

    @classmethod
    def of(cls, stranger: Stranger, *, admin: bool) -> StrangerPublic:
        return cls(
            id=stranger.id,
            note=stranger.note,
            source=stranger.source,
            photo_count=stranger.photo_count,
            created_at=stranger.created_at,
            thumbnail_url=f"{PREFIX}/{stranger.id}/thumbnail" if admin and stranger.photo_count else None,
        )


class StrangerPhotoPublic(BaseModel):
    id: int
    width: int
    height: int
    box: dict[str, float]
    score: float
    content_type: str
    size_bytes: int
    sha256: str
    created_at: datetime
    file_url: str | None = Field(None, description="the photo itself, for admin keys only")

    @classmethod
    def of(cls, photo: StrangerPhoto, *, admin: bool) -> StrangerPhotoPublic:
        fields = {name: getattr(photo, name) for name in cls.model_fields if name != "file_url"}
        url = f"{PREFIX}/{photo.stranger_id}/photos/{photo.id}/file" if admin else None
        return cls(**fields, file_url=url)


class StrangerDetailPublic(StrangerPublic):
    photos: list[StrangerPhotoPublic]


class StrangerChangePublic(StrangerPublic):
    photos: list[PhotoVerdictPublic]
    training: TrainingRequestPublic | None

    @classmethod
    def of_change(cls, change: StrangerChange) -> StrangerChangePublic:
        assert change.stranger is not None
        base = StrangerPublic.of(change.stranger, admin=True).model_dump()
        training = (
            None
            if change.training_requested is None
            else TrainingRequestPublic(request=change.training_requested)
        )
        return cls(**base, photos=[PhotoVerdictPublic.of(v) for v in change.photos], training=training)


class StrangersPage(BaseModel):
    items: list[StrangerPublic]
    total: int
    offset: int
    limit: int
