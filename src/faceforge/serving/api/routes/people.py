"""/api/v1/people: register people, manage their photos."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi.responses import FileResponse

from faceforge.core.errors import NotFoundError
from faceforge.serving.api.access import AdminAccess, ReadAccess
from faceforge.serving.api.byte_ranges import RangedFileResponse
from faceforge.serving.api.deps import PersonId, PhotoId, ServicesDep, SizeQuery, TextFilter
from faceforge.serving.api.errors import SERVER_ERRORS, error_responses
from faceforge.serving.api.http_defaults import NO_STORE
from faceforge.serving.api.schemas import (
    MergeRequest,
    PeoplePage,
    PersonChangePublic,
    PersonDetailPublic,
    PersonPublic,
    PersonUpdate,
    StoredPhotoPublic,
    SuspectedDuplicatePublic,
)
from faceforge.serving.api.uploads import UPLOAD_ERRORS, file_fields, read_uploads
from faceforge.storage.tables import MAX_ID

PREFIX = "/api/v1/people"
COMMON = error_responses(400, 401, 403, *SERVER_ERRORS)
read = APIRouter(prefix=PREFIX, tags=["people"], dependencies=[ReadAccess], responses=COMMON)
admin = APIRouter(prefix=PREFIX, tags=["people"], dependencies=[AdminAccess], responses=COMMON)
routers = (read, admin)

PhotosField = Annotated[list[UploadFile], File(description="zero or more photos of the person")]
TrainQuery = Annotated[
    bool,
    Query(
        description="ask for a new model version (false: bulk imports store photos and call "
        "POST /api/v1/training once at the end)"
    ),
]


@admin.post(
    "",
    status_code=201,
    responses={**UPLOAD_ERRORS, **error_responses(409)},
    dependencies=[file_fields("photos")],
)
def register_person(
    services: ServicesDep,
    name: Annotated[str, Form(description="display name")],
    position: Annotated[str | None, Form()] = None,
    external_id: Annotated[str | None, Form(description="your own identifier, unique")] = None,
    photos: PhotosField = [],  # noqa: B006 - FastAPI copies defaults per request
    train: TrainQuery = True,
) -> PersonChangePublic:
    """Register a person; every photo gets a verdict, and accepted photos trigger a new model version.
    A person may be registered without photos; when photos are sent and none is accepted, nothing is
    stored (422 with every verdict)."""
    limits = services.settings.limits
    uploads = read_uploads(photos, max_bytes=limits.max_file_bytes, max_count=limits.max_photos_per_request)
    result = services.people.register(
        name=name, position=position, external_id=external_id, uploads=uploads, train=train
    )
    return PersonChangePublic.of_change(result)


@read.get("")
def list_people(
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    external_id: Annotated[
        str | None, Query(max_length=200, description="only the person with this external id"), TextFilter
    ] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="names containing this, any case"), TextFilter
    ] = None,
) -> PeoplePage:
    if external_id is not None:
        found = services.people.find(external_id=external_id)
        items = [] if found is None else [PersonPublic.of(found)]
        return PeoplePage(items=items, total=len(items), offset=0, limit=limit)
    people, total = services.people.page(offset=offset, limit=limit, search=q)
    return PeoplePage(items=[PersonPublic.of(p) for p in people], total=total, offset=offset, limit=limit)


@read.get("/{person_id}", responses=error_responses(404))
def get_person(services: ServicesDep, person_id: PersonId) -> PersonDetailPublic:
    """The person, and whom the current version suspects to be the same person."""
    person = PersonPublic.of(services.people.get(person_id=person_id))
    duplicates = [
        SuspectedDuplicatePublic(**suspect) for suspect in services.models.suspected_duplicates_of(person_id)
    ]
    return PersonDetailPublic(**person.model_dump(), suspected_duplicates=duplicates)


@admin.patch("/{person_id}", responses=error_responses(404, 409))
def update_person(services: ServicesDep, person_id: PersonId, body: PersonUpdate) -> PersonChangePublic:
    result = services.people.update(person_id=person_id, changes=body.model_dump(exclude_unset=True))
    return PersonChangePublic.of_change(result)


@admin.delete("/{person_id}", status_code=204, responses=error_responses(404))
def delete_person(services: ServicesDep, person_id: PersonId) -> Response:
    """Delete the person, their photos, faces and embeddings; the next model version lacks them."""
    services.people.delete(person_id=person_id)
    return Response(status_code=204)


@admin.post("/{person_id}/merge", responses=error_responses(404, 409))
def merge_person(services: ServicesDep, person_id: PersonId, body: MergeRequest) -> PersonChangePublic:
    """The other person is this one registered again (see a version's ``suspected_duplicates``):
    their photos move here, they are deleted, and a new version is trained."""
    return PersonChangePublic.of_change(services.people.merge(person_id=person_id, other_id=body.other_id))


@admin.post(
    "/{person_id}/photos",
    status_code=201,
    responses={**UPLOAD_ERRORS, **error_responses(404)},
    dependencies=[file_fields("photos")],
)
def add_photos(
    services: ServicesDep, person_id: PersonId, photos: PhotosField, train: TrainQuery = True
) -> PersonChangePublic:
    """Add photos; when none is accepted, nothing is stored (422 with every verdict)."""
    limits = services.settings.limits
    uploads = read_uploads(photos, max_bytes=limits.max_file_bytes, max_count=limits.max_photos_per_request)
    change = services.people.add_photos(person_id=person_id, uploads=uploads, train=train)
    return PersonChangePublic.of_change(change)


@read.get("/{person_id}/photos", responses=error_responses(404))
def list_photos(services: ServicesDep, person_id: PersonId) -> list[StoredPhotoPublic]:
    return [StoredPhotoPublic.of(photo) for photo in services.people.photos(person_id=person_id)]


@admin.get(
    "/{person_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **error_responses(404)},
)
def person_thumbnail(services: ServicesDep, person_id: PersonId) -> Response:
    """A small JPEG of the person's face from their first photo (admin only: it is a face)."""
    data = services.people.thumbnail(person_id=person_id)
    if data is None:
        raise NotFoundError(f"person {person_id} has no photo")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": NO_STORE})


@admin.get(
    "/{person_id}/photos/{photo_id}/file",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}, **error_responses(404, 416)},
)
def photo_file(
    services: ServicesDep, person_id: PersonId, photo_id: PhotoId, size: SizeQuery = None
) -> Response:
    """The stored photo itself (admin only: it is a face); with ``size``, a JPEG of it scaled down."""
    path, content_type = services.people.photo_file(person_id=person_id, photo_id=photo_id)
    if size is not None:
        scaled = services.people.sized.jpeg(path, size)
        return Response(scaled, media_type="image/jpeg")
    return RangedFileResponse(path, media_type=content_type)


@admin.delete("/{person_id}/photos/{photo_id}", status_code=204, responses=error_responses(404))
def delete_photo(services: ServicesDep, person_id: PersonId, photo_id: PhotoId) -> Response:
    services.people.delete_photo(person_id=person_id, photo_id=photo_id)
    return Response(status_code=204)
