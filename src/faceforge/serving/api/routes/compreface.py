"""CompreFace's recognition API (the routes its SDKs and Double Take call), over faceforge's people.

Shapes follow CompreFace's ``docs/Rest-API-description.md``; errors are ``{"message", "code"}``
with CompreFace's numbers (no face: 400, code 28). The key is CompreFace's ``x-api-key`` header:
faceforge's admin keys write, read keys recognise. ``similarity`` is the calibrated probability of
``serving.services.compat``. Face plugins faceforge lacks (age, gender, mask, even the literal
``undefined`` an unconfigured Double Take sends) are ignored; ``landmarks`` and ``calculator`` (the
face's embedding: faceforge's, unit length, 640 numbers) are served.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Query, Request, Response, UploadFile
from starlette.datastructures import UploadFile as FormFile  # what a parsed form holds

from faceforge.core.errors import RequestRejectedError
from faceforge.core.faces import Face
from faceforge.serving.api.access import AdminAccess, ReadAccess
from faceforge.serving.api.deps import ServicesDep
from faceforge.serving.api.errors import SERVER_ERRORS, Dialect
from faceforge.serving.api.errors import error_responses as faceforge_error_responses
from faceforge.serving.api.uploads import read_base64_upload, read_upload
from faceforge.serving.services.compat import NoFaceError, image_uuid
from faceforge.serving.services.people import Upload


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return faceforge_error_responses(*statuses, dialect=Dialect.COMPREFACE)


PREFIX = "/api/v1/recognition"
COMMON = error_responses(400, 401, 403, *SERVER_ERRORS)
read = APIRouter(prefix=PREFIX, tags=["compreface"], dependencies=[ReadAccess], responses=COMMON)
admin = APIRouter(prefix=PREFIX, tags=["compreface"], dependencies=[AdminAccess], responses=COMMON)
verify_read = APIRouter(
    prefix="/api/v1/verification", tags=["compreface"], dependencies=[ReadAccess], responses=COMMON
)
detect_read = APIRouter(
    prefix="/api/v1/detection", tags=["compreface"], dependencies=[ReadAccess], responses=COMMON
)
routers = (read, admin, verify_read, detect_read)

# Optional to FastAPI only: a photo comes as this multipart file or as base64 in a JSON body
# (``FileBody``, ``SourceAndTarget``), and ``_photo`` refuses a request with neither.
ImageFile = Annotated[UploadFile | None, File(description="the photo (or its base64 in a JSON body)")]
DetProb = Annotated[
    float | None,
    Query(ge=0.0, le=1.0, allow_inf_nan=False, description="faces detected less surely are ignored"),
]
# A list: CompreFace (Spring) joins a repeated `face_plugins` with commas, and clients that build it from
# a list send it so; the one query parameter that may repeat (``deps.REPEATABLE_QUERY``).
Plugins = Annotated[
    list[str] | None,
    Query(
        description="face plugins: `landmarks` and `calculator` (the embedding) are served; others ignored"
    ),
]
Status = Annotated[bool, Query(description="add execution_time (ms) and plugins_versions")]
Limit = Annotated[int, Query(ge=0, le=100, description="at most this many faces, largest first; 0: all")]


@dataclass(slots=True)
class FaceOptions:
    """The query every route that finds faces takes (CompreFace's)."""

    limit: Limit = 0
    det_prob_threshold: DetProb = None
    face_plugins: Plugins = None
    status: Status = False


Options = Annotated[FaceOptions, Depends()]
# How many faces a request's photos gave, kept beside their stages' seconds (``_faces``).
ANALYSED = "faces analysed"
PLUGIN_VERSIONS = {"detector": "faceforge.MTCNN+refiner", "calculator": "faceforge.FaceNet+dlib"}


def _photos_in(*fields: str) -> Any:
    """A route dependency for the photo fields ``fields``, in either of CompreFace's forms: a
    multipart form (``None``), or, with ``Content-Type: application/json``, its "Base64 Support": an
    object whose fields are the form's, each photo its bytes in base64 (``{"file": "..."}``), as its
    SDKs send a photo given as base64 (the body). A photo under another name, or two under one, is
    refused rather than dropped (the last of two was taken), as on every faceforge upload route."""
    names = ", ".join(repr(field) for field in fields)

    async def read(request: Request) -> dict[str, Any] | None:
        content_type = request.headers.get("content-type", "")
        media_type = content_type.split(";")[0].strip().lower()  # media types ignore case
        # A urlencoded form holds no file: `curl -d '{"file": ...}'` sends JSON so, and is told below.
        if media_type == "multipart/form-data":
            sent = [key for key, value in (await request.form()).multi_items() if isinstance(value, FormFile)]
            stray = sorted({key for key in sent if key not in fields})
            if stray:
                raise RequestRejectedError(
                    "unexpected_file_field",
                    f"files sent as {', '.join(repr(key) for key in stray)}: send the photo as {names}",
                )
            twice = sorted({key for key in sent if sent.count(key) > 1})
            if twice:
                raise RequestRejectedError("too_many_files", f"{twice[0]!r} takes one photo; send one")
            return None
        if media_type != "application/json":
            # A JSON body with another type or none, a photo as the whole body, or a form: told how.
            if (
                content_type
                or request.headers.get("content-length", "0") != "0"
                or "transfer-encoding" in request.headers
            ):
                raise RequestRejectedError(
                    "unsupported_media_type",
                    f"send the photo as multipart/form-data (with curl, -F {fields[0]}=@photo.jpg) or as "
                    f"base64 in JSON with Content-Type: application/json, not {media_type or 'no type'}",
                    status=415,
                )
            return None
        try:
            body = json.loads(await request.body(), object_pairs_hook=_once_each)
        except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, or nested too deep
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
            raise RequestRejectedError("invalid_request", f"the body is not valid JSON: {reason}") from None
        if not isinstance(body, dict):
            raise RequestRejectedError(
                "invalid_request",
                f'the body must be a JSON object of base64 photos, e.g. {{"{fields[0]}": "..."}}',
            )
        unexpected = ", ".join(repr(key) for key in sorted(body) if key not in fields)
        if unexpected:
            raise RequestRejectedError(
                "invalid_request", f"unexpected fields in the body: {unexpected}; the photos go in {names}"
            )
        return body

    return Depends(read)


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are each given once: of ``{"file": a, "file": b}`` the parser kept
    the last, a photo the client may not have meant (two files in one form field are refused)."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repr(key) for key in repeated)} given more than once")
    return dict(pairs)


FileBody = Annotated[dict[str, Any] | None, _photos_in("file")]
SourceAndTarget = Annotated[dict[str, Any] | None, _photos_in("source_image", "target_image")]


def _base64_alternative(*fields: str) -> dict[str, Any]:
    """The JSON body beside the multipart form, for the OpenAPI document."""
    described = "the photo's bytes in base64 (padding, line breaks and a data URL's head accepted)"
    properties = {field: {"type": "string", "description": described} for field in fields}
    schema = {"type": "object", "required": list(fields), "properties": properties}
    # Required: a photo comes in one form or the other (FastAPI made the form optional, ``ImageFile``).
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _photo(services: ServicesDep, field: str, file: UploadFile | None, body: dict[str, Any] | None) -> Upload:
    max_bytes = services.settings.limits.max_file_bytes
    if file is not None:
        return read_upload(file, max_bytes=max_bytes)
    if body is not None and body.get(field) is not None:
        return read_base64_upload(body[field], field, max_bytes=max_bytes)
    raise RequestRejectedError(
        f"{field}_required",
        f"{field} is required: a file in a multipart form (with curl, -F {field}=@photo.jpg), "
        f'or its base64 in a JSON body ({{"{field}": "<base64>"}})',
    )


def _subject_body(body: dict[str, Any]) -> str:
    value = body.get("subject")
    if value is not None and not isinstance(value, str):
        raise RequestRejectedError("invalid_request", "subject must be a string")
    subject = (value or "").strip()
    if not subject:
        raise RequestRejectedError("subject_required", "Subject is required")  # as a missing field's
    return subject


def _box(box: dict[str, float], score: float) -> dict[str, Any]:
    return {
        "probability": round(score, 5),
        "x_min": max(0, math.floor(box["x"])),
        "y_min": max(0, math.floor(box["y"])),
        "x_max": math.ceil(box["x"] + box["width"]),
        "y_max": math.ceil(box["y"] + box["height"]),
    }


def _plugins(values: list[str] | None) -> set[str]:
    return {name.strip() for value in values or [] for name in value.split(",") if name.strip()}


def _described(face: Face, plugins: list[str] | None) -> dict[str, Any]:
    """A detected face as CompreFace describes one: its box, and its landmarks when asked for."""
    box = face.detection.box
    item: dict[str, Any] = {
        "box": _box({"x": box.x, "y": box.y, "width": box.width, "height": box.height}, face.detection.score)
    }
    if "landmarks" in _plugins(plugins):
        item["landmarks"] = [[round(x), round(y)] for x, y in face.detection.landmarks.points]
    if "calculator" in _plugins(plugins) and face.embedding is not None:
        item["embedding"] = [float(v) for v in face.embedding]
    return item


# -- subjects -----------------------------------------------------------------------------------------
@admin.post("/subjects", status_code=201)
def add_subject(services: ServicesDep, body: Annotated[dict[str, Any], Body()]) -> dict[str, str]:
    return {"subject": services.compat.add_subject(_subject_body(body)).name}


@read.get("/subjects")
@read.get("/subjects/", include_in_schema=False)
def list_subjects(services: ServicesDep) -> dict[str, list[str]]:
    return {"subjects": services.compat.subjects()}


# ``:path``: a subject may hold "/" ("AC/DC"), sent as %2F, which the server decodes before routing;
# without it such a subject could be created and never renamed or deleted (a tester's).
@admin.put("/subjects/{subject:path}", responses=error_responses(404))
def rename_subject(
    services: ServicesDep, subject: str, body: Annotated[dict[str, Any], Body()]
) -> dict[str, bool]:
    """Rename; renaming onto an existing subject merges the two (their photos join it)."""
    services.compat.rename_subject(subject, _subject_body(body))
    return {"updated": True}


@admin.delete("/subjects/{subject:path}", responses=error_responses(404))
def delete_subject(services: ServicesDep, subject: str) -> dict[str, str]:
    return {"subject": services.compat.delete_subject(subject).name}


@admin.delete("/subjects")
def delete_all_subjects(services: ServicesDep) -> dict[str, int]:
    return {"deleted": services.compat.delete_all_subjects()}


# -- faces --------------------------------------------------------------------------------------------
@admin.post(
    "/faces",
    status_code=201,
    responses=error_responses(413, 415, 503),
    openapi_extra=_base64_alternative("file"),
)
def add_face(
    services: ServicesDep,
    subject: Annotated[str, Query(min_length=1, max_length=200)],
    json_body: FileBody,
    file: ImageFile = None,
    det_prob_threshold: DetProb = None,
) -> dict[str, str]:
    """One face per image; the subject is created when missing."""
    upload = _photo(services, "file", file, json_body)
    photo_id, name = services.compat.add_face(subject, upload, min_detection=det_prob_threshold)
    return {"image_id": image_uuid(photo_id), "subject": name}


@read.get("/faces", responses=error_responses(404))
def list_faces(
    services: ServicesDep,
    page: Annotated[int, Query(ge=0, le=10**6)] = 0,
    size: Annotated[int, Query(ge=1, le=1000)] = 20,
    subject: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    faces, total = services.compat.faces_page(subject=subject or None, page=page, size=size)
    return {
        "faces": [{"image_id": image_id, "subject": name} for image_id, name in faces],
        "page_number": page,
        "page_size": size,
        "total_pages": math.ceil(total / size),
        "total_elements": total,
    }


@admin.delete("/faces", responses=error_responses(404))
def delete_faces(
    services: ServicesDep, subject: Annotated[str | None, Query(max_length=200)] = None
) -> dict[str, int]:
    """Every photo of the subject (every photo, without ``subject``, as CompreFace does); the people
    remain. An empty ``subject`` is refused: taken for none, it deleted every photo of everyone."""
    if subject is not None and not subject.strip():
        raise RequestRejectedError(
            "subject_required",
            "subject is empty: name the subject whose photos to delete (leaving the parameter out "
            "deletes every photo of every subject)",
        )
    return {"deleted": services.compat.delete_faces(subject)}


@admin.delete("/faces/{image_id}", responses=error_responses(404))
def delete_face(services: ServicesDep, image_id: str) -> dict[str, str]:
    return {"image_id": image_id, "subject": services.compat.delete_face(image_id)}


@admin.get("/faces/{image_id}/img", response_class=Response, responses=error_responses(404))
def face_image(services: ServicesDep, image_id: str) -> Response:
    data, content_type = services.compat.face_image(image_id)
    return Response(data, media_type=content_type)


@read.post(
    "/faces/{image_id}/verify",
    responses=error_responses(404, 413, 415, 503),
    openapi_extra=_base64_alternative("file"),
)
def verify_against_face(
    services: ServicesDep, image_id: str, json_body: FileBody, options: Options, file: ImageFile = None
) -> dict[str, Any]:
    seconds: dict[str, float] = {}
    reference = services.compat.stored_embedding(image_id)
    faces = _faces(services, _photo(services, "file", file, json_body), options, seconds)
    result = [
        _described(face, options.face_plugins)
        | {"similarity": round(services.compat.pair_probability(face.embedding, reference), 5)}
        for face in faces
        if face.embedding is not None
    ]
    return _with_status({"result": result}, options.status, seconds)


# -- recognition --------------------------------------------------------------------------------------
@read.post("/recognize", responses=error_responses(409, 413, 503), openapi_extra=_base64_alternative("file"))
def recognize(
    services: ServicesDep,
    json_body: FileBody,
    options: Options,
    file: ImageFile = None,
    prediction_count: Annotated[int, Query(ge=1, le=20)] = 1,
) -> dict[str, Any]:
    """Every face (largest first), each with its ``prediction_count`` most probable subjects."""
    upload = _photo(services, "file", file, json_body)
    faces = services.compat.recognize(
        upload.data,
        limit=options.limit,
        prediction_count=prediction_count,
        min_detection=options.det_prob_threshold,
    )
    plugins = _plugins(options.face_plugins)
    result = []
    for face in faces:
        item: dict[str, Any] = {
            "box": _box(face.box, face.score),
            "subjects": [{"subject": name, "similarity": round(p, 5)} for name, p in face.subjects],
        }
        if "landmarks" in plugins:
            item["landmarks"] = [[round(x), round(y)] for x, y in face.landmarks]
        if "calculator" in plugins:
            item["embedding"] = face.embedding
        if options.status:
            item["execution_time"] = dict(face.milliseconds)
        result.append(item)
    body: dict[str, Any] = {"result": result}
    if options.status:
        body["plugins_versions"] = PLUGIN_VERSIONS
    return body


@verify_read.post(
    "/verify",
    responses=error_responses(413, 415, 503),
    openapi_extra=_base64_alternative("source_image", "target_image"),
)
def verify_images(
    services: ServicesDep,
    json_body: SourceAndTarget,
    options: Options,
    source_image: ImageFile = None,
    target_image: ImageFile = None,
) -> dict[str, Any]:
    """The source image's largest face against every face of the target image."""
    seconds: dict[str, float] = {}
    source_photo = _photo(services, "source_image", source_image, json_body)
    target_photo = _photo(services, "target_image", target_image, json_body)
    # Which image had no face: "No face is found in the given image" of two left a tester guessing.
    source = _faces(
        services, source_photo, dataclasses.replace(options, limit=1), seconds, name="source_image"
    )[0]
    targets = _faces(services, target_photo, options, seconds, name="target_image")
    assert source.embedding is not None

    matches = [
        _described(face, options.face_plugins)
        | {"similarity": round(services.compat.pair_probability(face.embedding, source.embedding), 5)}
        for face in targets
        if face.embedding is not None
    ]
    described = _described(source, options.face_plugins)
    return _with_status(
        {"result": [{"source_image_face": described, "face_matches": matches}]}, options.status, seconds
    )


@detect_read.post(
    "/detect", responses=error_responses(413, 415, 503), openapi_extra=_base64_alternative("file")
)
def detect(
    services: ServicesDep, json_body: FileBody, options: Options, file: ImageFile = None
) -> dict[str, Any]:
    """CompreFace's detection service: every face (largest first) with its box, and its landmarks
    and embedding when asked for; no face is 400 with code 28, as its detection answers."""
    seconds: dict[str, float] = {}
    embed = "calculator" in _plugins(options.face_plugins)  # else no face is embedded: detection only
    faces = _faces(services, _photo(services, "file", file, json_body), options, seconds, embed=embed)
    result = [_described(face, options.face_plugins) for face in faces]
    return _with_status({"result": result}, options.status, seconds)


def _faces(
    services: ServicesDep,
    photo: Upload,
    options: FaceOptions,
    seconds: dict[str, float],
    *,
    embed: bool = True,
    name: str | None = None,
) -> list[Face]:
    """The photo's faces, largest first, at most ``options.limit`` (0: all), embedded if ``embed``;
    ``seconds`` adds up the analysis's stages. No face is ``NoFaceError`` (400, code 28), naming the
    image's field ``name`` when given."""
    try:
        faces = services.compat.faces_of(
            photo.data, min_detection=options.det_prob_threshold, seconds=seconds, embed=embed
        )
    except NoFaceError:
        raise NoFaceError(name) from None
    # Every face found was embedded (if any was), those beyond the limit too: ``calculator`` is shared
    # by them all.
    seconds[ANALYSED] = seconds.get(ANALYSED, 0.0) + len(faces)
    return faces[: options.limit] if options.limit else faces


def _with_status(body: dict[str, Any], status: bool, seconds: dict[str, float]) -> dict[str, Any]:
    """With ``status``, what CompreFace adds: the plugins and each result's ``execution_time`` in ms,
    ``detector`` the photos' detection and ``calculator`` one face's share of their embedding, as
    recognize gives them (verification gave the whole request's time as ``calculator`` alone), over
    every face embedded (``ANALYSED``), not only those the limit kept."""
    faces = seconds.get(ANALYSED, 1.0)
    if status:
        body["plugins_versions"] = PLUGIN_VERSIONS
        for item in body["result"]:
            item["execution_time"] = {
                "detector": round(1000 * seconds.get("detector", 0.0), 1),
                "calculator": round(1000 * seconds.get("calculator", 0.0) / max(1, faces), 1),
            }
    return body
