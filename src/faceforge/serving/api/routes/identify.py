"""/api/v1/identify: who is in this photo."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile

from faceforge.core.errors import RequestRejectedError
from faceforge.serving.api.access import ReadAccess
from faceforge.serving.api.blocking import run_blocking
from faceforge.serving.api.deps import ServicesDep
from faceforge.serving.api.errors import SERVER_ERRORS, error_responses
from faceforge.serving.api.schemas import IdentifiedFacePublic, IdentifyResult
from faceforge.serving.api.uploads import file_fields, read_upload
from faceforge.serving.services.identify import MAX_TOP_K
from faceforge.storage.tables import MAX_ID

read = APIRouter(
    prefix="/api/v1",
    tags=["identify"],
    dependencies=[ReadAccess],
    responses=error_responses(400, 401, 403, *SERVER_ERRORS),
)
routers = (read,)


FORM_FIELDS = ("threshold", "top_k", "version")


@read.post(
    "/identify",
    responses=error_responses(404, 409, 413, 415, 503),
    dependencies=[file_fields("photo", most=1)],
)
async def identify(
    request: Request,
    services: ServicesDep,
    photo: Annotated[UploadFile, File(description="a photo with zero or more faces")],
    threshold: Annotated[
        float | None,
        Form(
            ge=-1.0,
            le=1.0,
            allow_inf_nan=False,
            description=(
                "override the version's calibrated threshold (cosine); a person's margin from the "
                "strangers collection still applies on top"
            ),
        ),
    ] = None,
    top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K, description="candidates per face")] = 3,
    version: Annotated[
        int | None, Form(ge=1, le=MAX_ID, description="model version (default: current)")
    ] = None,
) -> IdentifyResult:
    """Recognise every face, largest first; ``match`` is null for unknown people; no face gives ``[]``."""
    misplaced = [name for name in FORM_FIELDS if name in request.query_params]
    if misplaced:  # ignored, a ?threshold would silently give the version's own decisions
        raise RequestRejectedError(
            "invalid_request", f"{', '.join(misplaced)}: send as multipart form fields, not in the query"
        )

    def work() -> IdentifyResult:
        upload = read_upload(photo, max_bytes=services.settings.limits.max_file_bytes)
        used, faces = services.identify.identify(
            upload.data, threshold=threshold, top_k=top_k, version=version
        )
        return IdentifyResult(version=used, faces=[IdentifiedFacePublic.of(face) for face in faces])

    # Asynchronous, with the work on the pool: FastAPI checks a plain function's answer against its
    # model on a pool thread too, one more hand-over between threads per request.
    return await run_blocking(work)
