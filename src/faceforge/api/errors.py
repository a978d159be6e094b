"""Every rejection is a JSON 4xx: ``{"error": {"code", "message"}}``; legacy routes keep their shape."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceforge.domain.errors import (
    ConflictError,
    FaceforgeError,
    InvalidImageError,
    ModelNotReadyError,
    NotFoundError,
    RequestRejectedError,
)

LEGACY_PREFIX = "/gorillas/"
API_PREFIX = "/api/"


class AuthError(FaceforgeError):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _status(error: FaceforgeError) -> int:
    if isinstance(error, (RequestRejectedError, AuthError)):
        return error.status
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, (ConflictError, ModelNotReadyError)):
        return 409
    if isinstance(error, InvalidImageError):
        return 413 if error.code == "image_too_large" else 400
    return 400


def _legacy(request: Request) -> bool:
    return request.url.path.startswith(LEGACY_PREFIX)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FaceforgeError)
    async def _faceforge(request: Request, error: FaceforgeError) -> JSONResponse:
        status = _status(error)
        if _legacy(request):
            return JSONResponse(
                {"status": "failed", "error": error.code.replace("_", " "), "message": error.message}, status
            )
        return error_response(status, error.code, error.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', ()) if p != 'body')}: {item.get('msg', '')}"
            for item in error.errors()
        )
        if _legacy(request):
            return JSONResponse({"status": "failed", "error": "bad request", "message": problems}, 400)
        return error_response(400, "invalid_request", problems or "the request is not valid")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404 and not request.url.path.startswith(API_PREFIX):
            return JSONResponse({"error": "not found"}, 404)
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail))
