"""The dashboard's files (public: they hold no data; every datum comes from the API with a key) and
``GET /api/v1/access``, which tells the dashboard what the presented key may do (public too: it
answers ``none`` for a missing or wrong key rather than an error, so the login page probes quietly)."""

from __future__ import annotations

from importlib import resources
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from faceforge.core.errors import NotFoundError
from faceforge.serving.api.access import PublicAccess, presented_access
from faceforge.serving.api.errors import SERVER_ERRORS, error_responses

public = APIRouter(include_in_schema=False, dependencies=[PublicAccess])
access = APIRouter(
    prefix="/api/v1",
    tags=["access"],
    dependencies=[PublicAccess],
    responses=error_responses(403, *SERVER_ERRORS),
)
routers = (public, access)

ASSETS = {
    "app.js": "text/javascript",
    "strangers.js": "text/javascript",
    "app.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
# The dashboard's own files change with the release, not per request.
ASSET_CACHING = "no-cache"
# No other site may frame faceforge's pages: a keyless server on loopback makes every visitor an
# admin, so a framing page could have them click "Make current" or "Delete" unseen (clickjacking).
# Both headers: CSP's frame-ancestors for today's browsers, X-Frame-Options for older ones.
NOT_FRAMED = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


def _static(name: str) -> bytes:
    return resources.files("faceforge.serving.web").joinpath("static", name).read_bytes()


@public.get("/")
def dashboard() -> Response:
    headers = {"Cache-Control": ASSET_CACHING, **NOT_FRAMED}
    return Response(_static("index.html"), media_type="text/html", headers=headers)


@public.get("/ui/{name}")
def dashboard_asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFoundError(f"no dashboard file {name!r}")
    headers = {"Cache-Control": ASSET_CACHING, **NOT_FRAMED}
    return Response(_static(name), media_type=ASSETS[name], headers=headers)


class AccessPublic(BaseModel):
    access: Literal["admin", "read", "none"]
    keys_required: bool


@access.get("/access")
def who_am_i(request: Request) -> AccessPublic:
    """What the presented key may do: ``admin`` (read and change), ``read``, or ``none`` (no key, or
    not one of this server's). Without configured keys (a loopback-only server) callers are ``admin``."""
    settings = request.app.state.settings
    if not settings.auth_enabled:
        return AccessPublic(access="admin", keys_required=False)
    level = presented_access(settings, request.headers)
    return AccessPublic(access="none" if level is None else level.value, keys_required=True)
