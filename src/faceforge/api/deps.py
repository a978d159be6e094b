"""Request dependencies: the lifespan's services and API-key checks, as ``Annotated`` aliases."""

from __future__ import annotations

import hmac
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request

from faceforge.api.container import Services
from faceforge.api.errors import AuthError


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


class Access(StrEnum):
    READ = "read"
    ADMIN = "admin"


def _presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches(key: str, keys: frozenset[str]) -> bool:
    return any(hmac.compare_digest(key.encode(), candidate.encode()) for candidate in keys)


def _check(request: Request, services: Services, needed: Access) -> None:
    settings = services.settings
    if not settings.auth_enabled:
        return
    key = _presented_key(request)
    if key is None:
        raise AuthError("unauthorized", "an API key is required (X-API-Key or Authorization: Bearer)", 401)
    if _matches(key, settings.admin_key_set):
        return
    if _matches(key, settings.read_key_set):
        if needed is Access.READ:
            return
        raise AuthError("forbidden", "this API key may only read; writing needs an admin key", 403)
    raise AuthError("unauthorized", "the API key is not valid", 401)


def require_read(request: Request, services: ServicesDep) -> None:
    _check(request, services, Access.READ)


def require_admin(request: Request, services: ServicesDep) -> None:
    _check(request, services, Access.ADMIN)


ReadAccess = Depends(require_read)
AdminAccess = Depends(require_admin)
