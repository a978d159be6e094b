"""/api/v1/training and /api/v1/models: training status, versions, activation, file downloads."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import FileResponse

from faceforge.core.records import VersionStatus
from faceforge.serving.api.access import AdminAccess, ReadAccess
from faceforge.serving.api.byte_ranges import RangedFileResponse
from faceforge.serving.api.deps import ServicesDep, VersionNumber
from faceforge.serving.api.errors import SERVER_ERRORS, error_responses
from faceforge.serving.api.schemas import ModelList, ModelVersionPublic, TrainingPublic
from faceforge.storage.tables import MAX_ID

COMMON = error_responses(400, 401, 403, *SERVER_ERRORS)
read = APIRouter(prefix="/api/v1", tags=["models"], dependencies=[ReadAccess], responses=COMMON)
admin = APIRouter(prefix="/api/v1", tags=["models"], dependencies=[AdminAccess], responses=COMMON)
routers = (read, admin)

# Model files hold names and face templates: caches may keep them for this client only. A version's
# files never change, so they may be kept for good.
MODEL_FILE_CACHING = "private, max-age=31536000, immutable"


@read.get("/training")
def training_status(services: ServicesDep) -> TrainingPublic:
    """The trainer's state: ``queued``, ``running`` (with ``stage`` and ``progress``) or ``idle``."""
    return TrainingPublic.of(services.models.training_status())


@admin.post("/training", status_code=202)
def request_training(services: ServicesDep) -> TrainingPublic:
    """Ask for a new model version now: after photos stored with ``train=false`` (a bulk import)."""
    services.people.request_training()
    return TrainingPublic.of(services.models.training_status())


@read.get("/models")
def list_models(
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    status: Annotated[VersionStatus | None, Query(description="only versions with this status")] = None,
) -> ModelList:
    """Versions newest first, a page at a time (every change makes one, so they add up)."""
    versions, total = services.models.page(offset=offset, limit=limit, status=status)
    return ModelList(
        items=[ModelVersionPublic.of(m) for m in versions], total=total, offset=offset, limit=limit
    )


@read.get("/models/current", responses=error_responses(409))
def current_model(services: ServicesDep) -> ModelVersionPublic:
    return ModelVersionPublic.of(services.models.current())


@read.get("/models/{version}", responses=error_responses(404))
def get_model(services: ServicesDep, version: VersionNumber) -> ModelVersionPublic:
    # Checked here, not in ``get``: identify and every file download read versions through it.
    return ModelVersionPublic.of(services.models.checked([services.models.get(version)])[0])


@admin.post("/models/{version}/activate", responses=error_responses(404, 409))
def activate_model(services: ServicesDep, version: VersionNumber) -> ModelVersionPublic:
    """Serve this ready version from now on (roll back or forward)."""
    return ModelVersionPublic.of(services.models.activate(version))


MODEL_FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the file"},
    206: {"description": "the requested byte range"},
    304: {"description": "unchanged (If-None-Match)"},
    **error_responses(404, 410, 416),
}


@read.head(
    "/models/{version}/files/{name}",
    response_class=FileResponse,
    responses=MODEL_FILE_RESPONSES,
    operation_id="model_file_headers",
    summary="Model File Headers",
)
@read.get("/models/{version}/files/{name}", response_class=FileResponse, responses=MODEL_FILE_RESPONSES)
def model_file(
    services: ServicesDep,
    version: VersionNumber,
    name: str,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Download a file of a ready version (HEAD: its headers only). ETag is the file's sha256 (as in
    the manifest); Range works."""
    path, sha256 = services.models.file(version, name)
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": MODEL_FILE_CACHING}
    if if_none_match is not None:
        presented = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        if "*" in presented or etag in presented:
            return Response(status_code=304, headers=headers)
    media = "application/json" if name.endswith(".json") else "text/plain" if name.endswith(".txt") else None
    return RangedFileResponse(
        path, media_type=media or "application/octet-stream", filename=name, headers=headers
    )
