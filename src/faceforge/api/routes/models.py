"""/api/v1/training and /api/v1/models: training status, versions, activation, file downloads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import FileResponse

from faceforge.api.deps import AdminAccess, ReadAccess, ServicesDep
from faceforge.api.schemas import ModelList, ModelVersionPublic, TrainingPublic

router = APIRouter(prefix="/api/v1", tags=["models"])


@router.get("/training", dependencies=[ReadAccess])
def training_status(services: ServicesDep) -> TrainingPublic:
    return TrainingPublic.of(services.models.training_status())


@router.get("/models", dependencies=[ReadAccess])
def list_models(services: ServicesDep) -> ModelList:
    return ModelList(items=[ModelVersionPublic.of(m) for m in services.models.list()])


@router.get("/models/current", dependencies=[ReadAccess])
def current_model(services: ServicesDep) -> ModelVersionPublic:
    return ModelVersionPublic.of(services.models.current())


@router.get("/models/{version}", dependencies=[ReadAccess])
def get_model(services: ServicesDep, version: int) -> ModelVersionPublic:
    return ModelVersionPublic.of(services.models.get(version))


@router.post("/models/{version}/activate", dependencies=[AdminAccess])
def activate_model(services: ServicesDep, version: int) -> ModelVersionPublic:
    """Serve this ready version from now on (roll back or forward)."""
    return ModelVersionPublic.of(services.models.activate(version))


@router.get("/models/{version}/files/{name}", dependencies=[ReadAccess], response_class=FileResponse)
def model_file(
    services: ServicesDep,
    version: int,
    name: str,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Download a file of a ready version. ETag is the file's sha256 (as in the manifest); Range works."""
    path, sha256 = services.models.file(version, name)
    etag = f'"{sha256}"'
    if if_none_match is not None:
        presented = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        if "*" in presented or etag in presented:
            return Response(status_code=304, headers={"ETag": etag})
    media = "application/json" if name.endswith(".json") else "text/plain" if name.endswith(".txt") else None
    return FileResponse(
        path,
        media_type=media or "application/octet-stream",
        filename=name,
        headers={"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"},
    )
