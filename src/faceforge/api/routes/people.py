"""/api/v1/people: register people, manage their photos."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi.responses import FileResponse

from faceforge.api.deps import AdminAccess, ReadAccess, ServicesDep
from faceforge.api.schemas import (
    PeoplePage,
    PersonChangePublic,
    PersonPublic,
    PersonUpdate,
    StoredPhotoPublic,
)
from faceforge.api.uploads import read_uploads
from faceforge.db import people_store

router = APIRouter(prefix="/api/v1/people", tags=["people"])

PhotosField = Annotated[list[UploadFile], File(description="zero or more photos of the person")]


@router.post("", status_code=201, dependencies=[AdminAccess])
def register_person(
    services: ServicesDep,
    name: Annotated[str, Form(description="display name")],
    position: Annotated[str | None, Form()] = None,
    external_id: Annotated[str | None, Form(description="your own identifier, unique")] = None,
    photos: PhotosField = [],  # noqa: B006 - FastAPI copies defaults per request
) -> PersonChangePublic:
    """Register a person; every photo gets a verdict, and accepted photos trigger a new model version."""
    limits = services.settings.limits
    uploads = read_uploads(photos, max_bytes=limits.max_file_bytes, max_count=limits.max_photos_per_request)
    result = services.people.register(name=name, position=position, external_id=external_id, uploads=uploads)
    return PersonChangePublic.of_change(result)


@router.get("", dependencies=[ReadAccess])
def list_people(
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> PeoplePage:
    people, total = services.people.page(offset=offset, limit=limit)
    return PeoplePage(items=[PersonPublic.of(p) for p in people], total=total, offset=offset, limit=limit)


@router.get("/{person_id}", dependencies=[ReadAccess])
def get_person(services: ServicesDep, person_id: int) -> PersonPublic:
    return PersonPublic.of(services.people.get(person_id=person_id))


@router.patch("/{person_id}", dependencies=[AdminAccess])
def update_person(services: ServicesDep, person_id: int, body: PersonUpdate) -> PersonChangePublic:
    result = services.people.update(person_id=person_id, changes=body.model_dump(exclude_unset=True))
    return PersonChangePublic.of_change(result)


@router.delete("/{person_id}", status_code=204, dependencies=[AdminAccess])
def delete_person(services: ServicesDep, person_id: int) -> Response:
    """Delete the person, their photos, faces and embeddings; the next model version lacks them."""
    services.people.delete(person_id=person_id)
    return Response(status_code=204)


@router.post("/{person_id}/photos", status_code=201, dependencies=[AdminAccess])
def add_photos(services: ServicesDep, person_id: int, photos: PhotosField) -> PersonChangePublic:
    limits = services.settings.limits
    uploads = read_uploads(photos, max_bytes=limits.max_file_bytes, max_count=limits.max_photos_per_request)
    return PersonChangePublic.of_change(services.people.add_photos(person_id=person_id, uploads=uploads))


@router.get("/{person_id}/photos", dependencies=[ReadAccess])
def list_photos(services: ServicesDep, person_id: int) -> list[StoredPhotoPublic]:
    return [StoredPhotoPublic.of(photo) for photo in services.people.photos(person_id=person_id)]


@router.get("/{person_id}/photos/{photo_id}/file", dependencies=[AdminAccess], response_class=FileResponse)
def photo_file(services: ServicesDep, person_id: int, photo_id: int) -> FileResponse:
    with services.sessions() as session:
        name, content_type = people_store.photo_file(session, person_id=person_id, photo_id=photo_id)
    return FileResponse(services.people.files.path(name), media_type=content_type)


@router.delete("/{person_id}/photos/{photo_id}", status_code=204, dependencies=[AdminAccess])
def delete_photo(services: ServicesDep, person_id: int, photo_id: int) -> Response:
    services.people.delete_photo(person_id=person_id, photo_id=photo_id)
    return Response(status_code=204)
