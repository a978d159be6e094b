"""/api/v1/strangers: faces never to be named, given to training as impostor evidence."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse

from faceforge.core.errors import NotFoundError
from faceforge.serving.api.access import Access, AdminAccess, ReadAccess, presented_access
from faceforge.serving.api.byte_ranges import RangedFileResponse
from faceforge.serving.api.deps import PathId, PhotoId, ServicesDep, SizeQuery, TextFilter
from faceforge.serving.api.errors import SERVER_ERRORS, error_responses
from faceforge.serving.api.http_defaults import NO_STORE
from faceforge.serving.api.stranger_schemas import (
    PREFIX,
    StrangerChangePublic,
    StrangerDetailPublic,
    StrangerPhotoPublic,
    StrangerPublic,
    StrangersPage,
)
from faceforge.serving.api.uploads import UPLOAD_ERRORS, file_fields, read_uploads
from faceforge.storage.tables import MAX_ID

COMMON = error_responses(400, 401, 403, *SERVER_ERRORS)
read = APIRouter(prefix=PREFIX, tags=["strangers"], dependencies=[ReadAccess], responses=COMMON)
admin = APIRouter(prefix=PREFIX, tags=["strangers"], dependencies=[AdminAccess], responses=COMMON)
routers = (read, admin)

StrangerId = Annotated[int, Path(ge=1, le=MAX_ID, description="a stranger's id"), PathId]
PhotosField = Annotated[
    list[UploadFile], File(description="one or more photos of the stranger, one face each")
]
TrainQuery = Annotated[
    bool,
    Query(
        description="ask for a new model version (false: bulk imports store photos and call "
        "POST /api/v1/training once at the end)"
    ),
]


def _is_admin(request: Request) -> bool:
    """Whether the caller may see faces (an admin key; everyone on a server without keys)."""
    settings = request.app.state.settings
    return not settings.auth_enabled or presented_access(settings, request.headers) is Access.ADMIN


@admin.post(
    "",
    status_code=201,
    responses={**UPLOAD_ERRORS, **error_responses(409)},
    dependencies=[file_fields("photos")],
)
def add_stranger(
    services: ServicesDep,
    photos: PhotosField,
    note: Annotated[str | None, Form(description="your own words about them (never in a model)")] = None,
    source: Annotated[
        str | None, Form(description="where they come from, unique (what a bulk import finds them by)")
    ] = None,
    train: TrainQuery = True,
) -> StrangerChangePublic:
    """A new stranger: someone the models must never name. Every photo gets a verdict as for a
    person; when none is accepted, nothing is stored (422 with every verdict)."""
    limits = services.settings.limits
    uploads = read_uploads(photos, max_bytes=limits.max_file_bytes, max_count=limits.max_photos_per_request)
    change = services.strangers.add(note=note, source=source, uploads=uploads, train=train)
    return StrangerChangePublic.of_change(change)


@read.get("")
def list_strangers(
    request: Request,
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    source: Annotated[
        str | None, Query(max_length=200, description="only the stranger from this source"), TextFilter
    ] = None,
) -> StrangersPage:
    admin_view = _is_admin(request)
    if source is not None:
        found = services.strangers.find(source=source)
        items = [] if found is None else [StrangerPublic.of(found, admin=admin_view)]
        return StrangersPage(items=items, total=len(items), offset=0, limit=limit)
    strangers, total = services.strangers.page(offset=offset, limit=limit)
    items = [StrangerPublic.of(s, admin=admin_view) for s in strangers]
    return StrangersPage(items=items, total=total, offset=offset, limit=limit)


@read.get("/{stranger_id}", responses=error_responses(404))
def get_stranger(request: Request, services: ServicesDep, stranger_id: StrangerId) -> StrangerDetailPublic:
    admin_view = _is_admin(request)
    stranger = StrangerPublic.of(services.strangers.get(stranger_id=stranger_id), admin=admin_view)
    photos = [
        StrangerPhotoPublic.of(p, admin=admin_view)
        for p in services.strangers.photos(stranger_id=stranger_id)
    ]
    return StrangerDetailPublic(**stranger.model_dump(), photos=photos)


@admin.delete("/{stranger_id}", status_code=204, responses=error_responses(404))
def delete_stranger(services: ServicesDep, stranger_id: StrangerId) -> Response:
    """Delete the stranger and their photos; the next model version no longer knows their face."""
    services.strangers.delete(stranger_id=stranger_id)
    return Response(status_code=204)


@admin.delete("/{stranger_id}/photos/{photo_id}", status_code=204, responses=error_responses(404, 409))
def delete_stranger_photo(services: ServicesDep, stranger_id: StrangerId, photo_id: PhotoId) -> Response:
    """Delete one of the stranger's photos (a face that is not theirs, a poor one); the next model
    version no longer uses it. Their only photo cannot go this way (409): delete the stranger."""
    services.strangers.delete_photo(stranger_id=stranger_id, photo_id=photo_id)
    return Response(status_code=204)


@admin.post(
    "/{stranger_id}/photos",
    status_code=201,
    responses={**UPLOAD_ERRORS, **error_responses(404)},
    dependencies=[file_fields("photos")],
)
def add_stranger_photos(
    services: ServicesDep, stranger_id: StrangerId, photos: PhotosField, train: TrainQuery = True
) -> StrangerChangePublic:
    """More photos of the same stranger; when none is accepted, nothing is stored (422)."""
    limits = services.settings.limits
    uploads = read_uploads(photos, max_bytes=limits.max_file_bytes, max_count=limits.max_photos_per_request)
    change = services.strangers.add_photos(stranger_id=stranger_id, uploads=uploads, train=train)
    return StrangerChangePublic.of_change(change)


@admin.get(
    "/{stranger_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **error_responses(404)},
)
def stranger_thumbnail(services: ServicesDep, stranger_id: StrangerId) -> Response:
    """A small JPEG of the stranger's face from their first photo (admin only: it is a face)."""
    data = services.strangers.thumbnail(stranger_id=stranger_id)
    if data is None:
        raise NotFoundError(f"stranger {stranger_id} has no photo")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": NO_STORE})


@admin.get(
    "/{stranger_id}/photos/{photo_id}/file",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}, **error_responses(404, 416)},
)
def stranger_photo_file(
    services: ServicesDep, stranger_id: StrangerId, photo_id: PhotoId, size: SizeQuery = None
) -> Response:
    """The stored photo itself (admin only: it is a face); with ``size``, a JPEG of it scaled down."""
    path, content_type = services.strangers.photo_path(stranger_id=stranger_id, photo_id=photo_id)
    if size is not None:
        scaled = services.people.sized.jpeg(path, size)
        return Response(scaled, media_type="image/jpeg", headers={"Cache-Control": NO_STORE})
    return RangedFileResponse(path, media_type=content_type, headers={"Cache-Control": NO_STORE})
