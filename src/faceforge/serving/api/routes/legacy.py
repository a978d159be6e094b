"""The original app's routes, byte-for-byte in shape (register, model info)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from faceforge.core.errors import ModelNotReadyError, RequestRejectedError
from faceforge.core.model.manifest import HEAD_FILE
from faceforge.serving.api.access import AdminAccess, ReadAccess
from faceforge.serving.api.blocking import run_blocking
from faceforge.serving.api.deps import ServicesDep
from faceforge.serving.api.errors import LEGACY_PREFIX, SERVER_ERRORS, error_responses
from faceforge.serving.api.uploads import file_fields, read_uploads
from faceforge.serving.services.models import ModelView
from faceforge.serving.services.people import PhotosRejectedError

PREFIX = "/gorillas/face-recognition/api/v1.0"
assert PREFIX.startswith(LEGACY_PREFIX)
COMMON = error_responses(400, 401, 403, *SERVER_ERRORS, legacy=True)
read = APIRouter(prefix=PREFIX, tags=["legacy"], dependencies=[ReadAccess], responses=COMMON)
admin = APIRouter(prefix=PREFIX, tags=["legacy"], dependencies=[AdminAccess], responses=COMMON)
routers = (read, admin)

# What the original iOS app downloads, in order of preference (the Core ML file once it is exported).
LEGACY_MODEL_FILES = ("model.mlmodel", HEAD_FILE)


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"status": "failed", "error": "bad request", "message": message}, status_code=400)


# A photo under another field registered a person without it and said "success" (``file_fields``).
@admin.post(
    "/user/register",
    responses=error_responses(413, 415, 503, legacy=True),
    dependencies=[file_fields("photos")],
)
def register(
    services: ServicesDep,
    name: Annotated[str | None, Form()] = None,
    position: Annotated[str | None, Form()] = None,
    photos: Annotated[list[UploadFile], File()] = [],  # noqa: B006 - FastAPI copies defaults per request
) -> JSONResponse:
    if not (name or "").strip():
        return _bad_request("Name is required")
    limits = services.settings.limits
    try:
        uploads = read_uploads(
            photos, max_bytes=limits.max_file_bytes, max_count=limits.max_photos_per_request
        )
        result = services.people.register(name=name, position=position, external_id=None, uploads=uploads)
    except PhotosRejectedError:
        raise  # answered in the legacy shape with every photo's reasons
    except RequestRejectedError as error:
        if error.status != 400:  # a photo over the limit: 413 as on every route (it said 400)
            raise
        return _bad_request(error.message)
    assert result.person is not None
    user = {"id": result.person.id, "name": result.person.name, "position": result.person.position}
    return JSONResponse({"status": "success", "user": user})


def _model_file(model: ModelView) -> str:
    listed = {} if model.published is None else model.published.files
    for name in LEGACY_MODEL_FILES:
        if name in listed:
            return name
    raise ModelNotReadyError("model is not ready")


@read.get("/model/info")
async def model_info(services: ServicesDep, request: Request) -> Response:
    """Asked by every phone on every start: the current version (cached; checking that cache stats a
    file, so on a worker thread) and its answer, encoded once per version and base URL."""
    model = await run_blocking(services.models.current_or_none)
    try:
        if model is None:
            raise ModelNotReadyError("model is not ready")
        name = _model_file(model)
    except ModelNotReadyError:
        return JSONResponse({"status": "failed", "error": "model is not ready"}, status_code=400)
    ready = model

    def encode() -> bytes:
        url = str(request.url_for("model_file", version=ready.version, name=name))
        users: list[dict[str, Any]] = [
            {"id": p["id"], "name": p["name"], "position": p["position"]} for p in ready.people
        ]
        body = {"status": "success", "model": {"version": ready.version, "url": url, "users": users}}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    key = ("legacy_model_info", model.version, str(request.base_url))
    return Response(services.answers.get(key, encode), media_type="application/json")
