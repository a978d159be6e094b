"""/api/v1/identify: who is in this photo."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from faceforge.api.deps import ReadAccess, ServicesDep
from faceforge.api.schemas import IdentifiedFacePublic, IdentifyResult
from faceforge.api.uploads import read_upload

router = APIRouter(prefix="/api/v1", tags=["identify"])


@router.post("/identify", dependencies=[ReadAccess])
def identify(
    services: ServicesDep,
    photo: Annotated[UploadFile, File(description="a photo with zero or more faces")],
    threshold: Annotated[
        float | None, Form(description="override the version's calibrated threshold")
    ] = None,
    top_k: Annotated[int, Form(description="candidates per face")] = 3,
    version: Annotated[int | None, Form(description="model version (default: current)")] = None,
) -> IdentifyResult:
    """Recognise every face, largest first; ``match`` is null for unknown people; no face gives ``[]``."""
    upload = read_upload(photo, max_bytes=services.settings.limits.max_file_bytes)
    used, faces = services.identify.identify(upload.data, threshold=threshold, top_k=top_k, version=version)
    return IdentifyResult(version=used, faces=[IdentifiedFacePublic.of(face) for face in faces])
