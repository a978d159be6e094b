"""Every error is JSON: ``{"error": {"code", "message"}}``. Routes that speak another
API keep that API's shape (a *dialect*, chosen by path): the original app's routes
``{"status": "failed", "error", "message"}``, CompreFace's ``{"message", "code": <its number>}``,
DeepStack's ``{"success": false, "error"}``. One code per cause, whichever layer finds it.

Client mistakes are 4xx. Our own faults are 5xx, in the same shapes: 503 with ``Retry-After`` for
conditions that pass (vision work queued, the database locked or unreachable, the disk full), 500
(``internal_error``, logged with its traceback) for everything else, including a ``FaceforgeError``
that no client could have caused (a damaged version, missing weights).

The same module describes those answers in the OpenAPI document (``error_responses``), so the
document lists every status a route can give and the body that comes with it.
"""

from __future__ import annotations

import errno
import logging
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from faceforge.core.errors import (
    IMAGE_TOO_LARGE,
    BusyError,
    ClientRuntimeMissingError,
    ConflictError,
    FaceforgeError,
    InvalidImageError,
    ModelNotReadyError,
    NotFoundError,
    RequestRejectedError,
    WeightsNotPreparedError,
)
from faceforge.serving.api.schemas import PhotoVerdictPublic
from faceforge.serving.services.people import PhotosRejectedError, PhotoVerdict

LEGACY_PREFIX = "/gorillas/"
API_PREFIX = "/api/"
COMPREFACE_PREFIXES = ("/api/v1/recognition/", "/api/v1/verification/", "/api/v1/detection/")
DEEPSTACK_PREFIX = "/v1/vision/"
RETRY_AFTER_SECONDS = 1  # vision work queued: a slot frees within a photo's analysis
# A locked or unreachable database and a full disk pass more slowly (a long write, a restart, an operator).
STORAGE_RETRY_AFTER_SECONDS = 10
# A worker's first start converts the networks in about a minute (faceforge prepare, the same).
PREPARE_RETRY_AFTER_SECONDS = 30
log = logging.getLogger(__name__)
# Our codes -> CompreFace's (its CommonExceptionCode); causes it has no number for get 0 (UNDEFINED).
COMPREFACE_CODES = {
    "no_face": 28,  # NO_FACES_FOUND: what its clients test for
    "multiple_faces": 31,  # TOO_MANY_FACES
    "image_not_found": 11,  # IMAGE_NOT_FOUND
    "unauthorized": 10,  # an unknown key: MODEL_NOT_FOUND
    "keys_required": 10,
    "foreign_host": 10,
    "foreign_origin": 10,
    "forbidden": 32,  # a read key writing: WRITING_NOT_ALLOWED
    "invalid_request": 26,  # VALIDATION_CONSTRAINT_VIOLATION
    "not_a_file": 26,
    "file_required": 33,  # MISSING_REQUEST_PARAMETER
    "source_image_required": 33,
    "target_image_required": 33,
    "unexpected_file_field": 26,
    "too_many_files": 26,
    "subject_required": 5,  # EMPTY_REQUIRED_FIELD
    "name_invalid": 26,  # a subject no address can carry, or with control characters
    "name_too_long": 26,
    "reserved_name": 26,  # "unknown"
}


class Dialect(StrEnum):
    FACEFORGE = "faceforge"
    LEGACY = "legacy"
    COMPREFACE = "compreface"
    DEEPSTACK = "deepstack"


def dialect_of(path: str) -> Dialect:
    if path.startswith(LEGACY_PREFIX):
        return Dialect.LEGACY
    if path.startswith(COMPREFACE_PREFIXES):
        return Dialect.COMPREFACE
    if path.startswith(DEEPSTACK_PREFIX):
        return Dialect.DEEPSTACK
    return Dialect.FACEFORGE


class AuthError(FaceforgeError):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


# -- bodies ---------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable cause, e.g. `name_required`")
    message: str = Field(description="what went wrong, for people")
    photos: list[PhotoVerdictPublic] | None = Field(
        None, description="with `photos_rejected`: every photo's verdict"
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


class LegacyErrorBody(BaseModel):
    status: str = Field(description="always `failed`")
    error: str
    message: str | None = None
    reasons: list[dict[str, Any]] | None = Field(None, description="per photo, when no photo was accepted")


def error_body(
    code: str, message: str, *, dialect: Dialect, verdicts: list[PhotoVerdict] | None = None
) -> dict[str, Any]:
    if dialect is Dialect.COMPREFACE:
        return {"message": message, "code": COMPREFACE_CODES.get(code, 0)}
    if dialect is Dialect.DEEPSTACK:
        return {"success": False, "error": message}
    if dialect is Dialect.LEGACY:
        body: dict[str, Any] = {"status": "failed", "error": code.replace("_", " "), "message": message}
        if verdicts is not None:
            body["reasons"] = [{"filename": v.filename, "reasons": v.reasons} for v in verdicts]
        return body
    detail: dict[str, Any] = {"code": code, "message": message}
    if verdicts is not None:
        detail["photos"] = [PhotoVerdictPublic.of(v).model_dump() for v in verdicts]
    return {"error": detail}


_DESCRIPTIONS = {
    400: "a field is missing, malformed or out of range (`invalid_request`, `name_required`...)",
    401: "no API key, or a key that is not valid (`unauthorized`)",
    403: "the key may only read (`forbidden`), or no keys are set and the client is not on loopback "
    "(`keys_required`), the request names another host (`foreign_host`) or comes from a web page of "
    "another origin (`foreign_origin`)",
    404: "no such person, photo, version or file (`not_found`)",
    409: "conflicts with the current state (`conflict`, `model_not_ready`)",
    410: "the version names people deleted or merged since, and is not the current one: its files are "
    "no longer served (`names_deleted_people`)",
    413: "too large: `request_too_large`, `file_too_large`, `too_many_photos`, `image_too_large`",
    415: "the body is not multipart/form-data (or a form), where the photos are files "
    "(`unsupported_media_type`)",
    416: "no range of the `Range` header lies within the file (`range_not_satisfiable`; `Content-Range: "
    "bytes */<size>`); a `Range` of another unit or of invalid syntax is ignored (200, the whole file)",
    422: "photos were sent and none was accepted (`photos_rejected`, with every photo's verdict)",
    500: "a fault of the server (`internal_error`, or the cause, e.g. a damaged model version); logged",
    503: "retry after the `Retry-After` seconds: too much vision work queued (`busy`), the database "
    "locked or unreachable (`database_locked`, `database_unavailable`), the disk full (`storage_full`), "
    "the networks not yet prepared by a worker or `faceforge prepare` (`weights_not_prepared`)",
}
# Every route may meet these: a fault of ours, a locked database, a full disk.
SERVER_ERRORS = (500, 503)


class CompreFaceErrorBody(BaseModel):
    message: str
    code: int = Field(description="CompreFace's number for the cause (28: no face; 0: undefined)")


class DeepStackErrorBody(BaseModel):
    success: bool = Field(description="always false")
    error: str


def error_responses(
    *statuses: int, legacy: bool = False, dialect: Dialect = Dialect.FACEFORGE
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, in the routes' dialect."""
    models: dict[Dialect, type[BaseModel]] = {
        Dialect.FACEFORGE: ErrorBody,
        Dialect.LEGACY: LegacyErrorBody,
        Dialect.COMPREFACE: CompreFaceErrorBody,
        Dialect.DEEPSTACK: DeepStackErrorBody,
    }
    model = models[Dialect.LEGACY if legacy else dialect]
    return {status: {"model": model, "description": _DESCRIPTIONS[status]} for status in statuses}


# -- status per cause -----------------------------------------------------------------------------
def _status(error: FaceforgeError) -> int:
    """The client-facing causes by name; any other ``FaceforgeError`` (manifest, weights, export,
    training) is a fault of this server, whatever the request was."""
    if isinstance(error, (RequestRejectedError, AuthError)):
        return error.status
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, (ConflictError, ModelNotReadyError)):
        return 409
    if isinstance(error, (BusyError, ClientRuntimeMissingError, WeightsNotPreparedError)):
        return 503
    if isinstance(error, InvalidImageError):
        return 413 if error.code == IMAGE_TOO_LARGE else 400
    return 500


# SQLite's words, and PostgreSQL's SQLSTATEs: lock_not_available, query_canceled (lock_timeout,
# statement_timeout), disk_full, out_of_memory's class is not ours to retry.
_SQLITE_LOCKED = ("database is locked", "database table is locked")
_SQLITE_FULL = "database or disk is full"
_PG_LOCKED = {"55P03", "57014"}
_PG_FULL = "53100"
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def storage_condition(error: BaseException) -> tuple[str, str] | None:
    """``(code, message)`` for a database or disk condition that passes (answered 503), else ``None``."""
    if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
        return "storage_full", "the server's disk is full; nothing was stored"
    if not isinstance(error, OperationalError):
        return None
    text = str(error.orig).lower()
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate == _PG_FULL or _SQLITE_FULL in text:
        return "storage_full", "the database's disk is full; nothing was stored"
    if sqlstate in _PG_LOCKED or any(words in text for words in _SQLITE_LOCKED):
        return "database_locked", "the database is locked by another writer; nothing was stored"
    return "database_unavailable", "the database cannot be reached or used right now"


def _legacy(request: Request) -> bool:
    return dialect_of(request.url.path) is Dialect.LEGACY


def _respond(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    verdicts: list[PhotoVerdict] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = error_body(code, message, dialect=dialect_of(request.url.path), verdicts=verdicts)
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_code(error: RequestValidationError) -> tuple[int, str, str]:
    """Missing fields get ``<field>_required`` (as blank ones do); ids in the path that cannot name
    anything (not a number, out of range) are 404; everything else is ``invalid_request``."""
    items = list(error.errors())
    broken = next((item for item in items if item.get("type") == "json_invalid"), None)
    if broken is not None:  # FastAPI says "JSON decode error" at a character index, no more
        where = list(broken.get("loc", ()))[1:]  # ("body", the character's index)
        reason = str((broken.get("ctx") or {}).get("error", "")).strip() or "malformed"
        at = f" (at character {where[-1]})" if where else ""
        return 400, "invalid_request", f"the body is not valid JSON: {reason}{at}"
    problems = "; ".join(
        f"{'.'.join(str(p) for p in item.get('loc', ()) if p != 'body') or 'the body'}: {item.get('msg', '')}"
        for item in items
    )
    if items and all(item.get("loc", ("",))[0] == "path" for item in items):
        return 404, "not_found", f"nothing is found at this path ({problems})"
    as_text = [str(item["loc"][-1]) for item in items if "Expected UploadFile" in str(item.get("msg", ""))]
    if as_text:
        # `curl -F target_image=face.jpg` (no @) sends the name as text, on routes that read files by
        # name (CompreFace's, DeepStack's): the answer named FastAPI's internals ("Expected UploadFile,
        # received: <class 'str'>"). Ours refuse it before (``uploads.file_fields``), in these words.
        field = as_text[0]
        return (
            400,
            "not_a_file",
            f"{field!r} was sent as text: send it as a file (with curl, -F {field}=@photo.jpg)",
        )
    missing = {str(item["loc"][-1]) for item in items if item.get("type") == "missing" and item.get("loc")}
    if len(items) == 1 and len(missing) == 1:
        (field,) = missing
        return 400, f"{field}_required", _required(field)
    return 400, "invalid_request", problems or "the request is not valid"


def _required(field: str) -> str:
    """ "Name is required" (the original app's words); a field named in code keeps its spelling, where
    capitalising it read "Target_image is required" and "Other_id is required"."""
    if field == "photos":
        return "photos are required: at least one, each a file in the field 'photos'"
    return f"{field.capitalize()} is required" if field.isalpha() else f"{field} is required"


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (routes are declared one method each)."""
    methods: set[str] = set()
    for route in request.app.state.api_routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


INTERNAL_MESSAGE = "the server failed to answer this request; the fault is logged"


def internal_error(request: Request, error: BaseException) -> JSONResponse:
    """The answer to a fault nobody anticipated: logged in full, answered without internals."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return _respond(request, 500, "internal_error", INTERNAL_MESSAGE)


def _retry_after(error: FaceforgeError) -> dict[str, str] | None:
    if isinstance(error, BusyError):
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(error, WeightsNotPreparedError):
        return {"Retry-After": str(PREPARE_RETRY_AFTER_SECONDS)}
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FaceforgeError)
    async def _faceforge(request: Request, error: FaceforgeError) -> JSONResponse:
        verdicts = error.verdicts if isinstance(error, PhotosRejectedError) else None
        headers = _retry_after(error)
        if verdicts is not None and _legacy(request):
            # The original app knows only 400 for a refused registration.
            return _respond(request, 400, error.code, error.message, verdicts=verdicts)
        status = _status(error)
        if status == 500:
            log.error("%s %s failed: %s", request.method, request.url.path, error.message, exc_info=error)
        return _respond(request, status, error.code, error.message, verdicts=verdicts, headers=headers)

    async def _storage(request: Request, error: Exception) -> JSONResponse:
        condition = storage_condition(error)
        if condition is None:
            return internal_error(request, error)
        code, message = condition
        log.warning("%s %s: %s (%s)", request.method, request.url.path, message, error)
        headers = {"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)}
        return _respond(request, 503, code, message, headers=headers)

    app.add_exception_handler(OperationalError, _storage)
    app.add_exception_handler(OSError, _storage)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, error: Exception) -> JSONResponse:
        # Starlette answers with this from its outermost middleware, then re-raises the error to the
        # server, which logs it: not logged twice here. Outside CrossOriginMiddleware too, so its
        # headers are added here: a named origin's page reads that the fault is ours.
        policy = getattr(request.app.state, "cross_origin", None)
        headers = policy.answer_headers(request.headers.get("origin")) if policy is not None else None
        return _respond(request, 500, "internal_error", INTERNAL_MESSAGE, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        status, code, message = _validation_code(error)
        return _respond(request, status, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if isinstance(error.__cause__, FaceforgeError):
            # Ours, raised while FastAPI read the body (a multipart body cut short): it answered
            # "There was an error parsing the body", which says neither what nor what to do.
            return await _faceforge(request, error.__cause__)
        status, detail = error.status_code, str(error.detail)
        headers = dict(error.headers or {})
        if status == 404 and not request.url.path.startswith((API_PREFIX, LEGACY_PREFIX, DEEPSTACK_PREFIX)):
            return _respond(request, 404, "not_found", f"nothing is served at {request.url.path}")
        if status == 405:
            headers["Allow"] = _allowed_methods(request)
            return _respond(
                request, 405, "method_not_allowed", f"{request.method} is not allowed here", headers=headers
            )
        if status == 413:  # FastAPI's body limit, met while reading a (chunked) body
            return _respond(
                request, 413, "request_too_large", "the request body is too large", headers=headers
            )
        if status == 400 and detail.startswith("Too many files"):  # the form's max_files
            return _respond(request, 413, "too_many_photos", detail, headers=headers)
        code = {400: "invalid_request", 404: "not_found"}.get(status, "http_error")
        return _respond(request, status, code, detail, headers=headers)
