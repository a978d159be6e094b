"""Who may call what: API keys (admin writes, read reads), declared once per router, checked before
any request body is read.

Each router declares its access level with ``ReadAccess`` or ``AdminAccess`` in its dependencies.
``AccessMiddleware`` finds the route a request is for and checks the key from the headers alone, so a
100 MB upload with a missing or wrong key is refused without reading it. The same dependencies check
again inside the route (defence in depth) and put the API-key scheme in the OpenAPI document.

Without any keys configured the service is open, but only to loopback clients, unless the
``open_network_without_keys`` setting says otherwise: an open service on a network interface would
let anyone register faces and download them. Loopback is not enough on its own: every web page the
user's browser shows runs on loopback too. So without keys a request must also name this server as
its ``Host`` (a loopback name or address: a DNS-rebinding page names its own domain), and a request
that carries an ``Origin`` (browsers send one with every cross-site request that could change
anything) must come from this very origin, as the dashboard served here does, or from one the
operator named in ``FACEFORGE_CORS_ORIGINS`` (``serving.api.cross_origin``). CLI and SDK clients
send no ``Origin`` and are unaffected.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Security
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from faceforge.core.config import Settings
from faceforge.serving.api.errors import AuthError, Dialect, dialect_of, error_body


class Access(StrEnum):
    PUBLIC = "public"  # no key needed (the dashboard's files); still loopback-only without keys
    READ = "read"
    ADMIN = "admin"


# Declared for the OpenAPI document; the keys are read from the headers by ``presented_key``.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an admin or read key")
_bearer = HTTPBearer(auto_error=False, description="the same keys as `Authorization: Bearer <key>`")


def presented_key(headers: Headers) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches(key: str, keys: frozenset[str]) -> bool:
    """Whether ``key`` (a header value, which HTTP reads as Latin-1) is one of ``keys``. A key with
    accents arrives as Latin-1 from browsers and as UTF-8 bytes from curl and most clients, so both
    readings count: "clé" sent by curl was "clÃ©" here, every call a 401."""
    readings = {key.encode("latin-1", errors="replace"), key.encode()}  # the bytes sent; as text
    return any(hmac.compare_digest(reading, candidate.encode()) for reading in readings for candidate in keys)


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _host_name(host: str) -> str:
    """``host`` of a ``Host`` header value (``host``, ``host:port``, ``[v6]:port``), lower case."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower() if "]" in host else ""
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def _loopback_name(name: str) -> bool:
    return _loopback(name) or name.endswith(".localhost")


def _network_name(name: str, allowed: frozenset[str]) -> bool:
    """A name an open server is reached by: an IP address (no page's name), localhost, or allowed."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return _loopback_name(name) or name.rstrip(".") in allowed
    return True


def _origin_host(origin: str) -> str | None:
    """The ``host[:port]`` of an ``Origin`` header, lower case; ``None`` for one that is no URL
    (``http://[`` raised ValueError in the middleware: a 500 on every route, /healthz included)."""
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:
        return None


def browser_error(settings: Settings, headers: Headers) -> AuthError | None:
    """Why a request to a server without keys may not proceed although its client is local: it names
    another host (DNS rebinding), or a web page of another origin sent it."""
    host = headers.get("host", "")
    name = _host_name(host)
    if not settings.open_network_without_keys and not _loopback_name(name):
        return AuthError(
            "foreign_host",
            f"faceforge runs without API keys and answers only requests to localhost, not to {host!r}; "
            "use http://localhost or http://127.0.0.1, or set FACEFORGE_ADMIN_KEYS",
            403,
        )
    if settings.open_network_without_keys and not _network_name(name, settings.allowed_host_set):
        # Open to the network, a web page whose name was rebound to this server's address sends its
        # own name as Host (and a matching Origin): any site someone on the network opened was admin.
        return AuthError(
            "foreign_host",
            f"faceforge runs without API keys and answers requests to its IP addresses, localhost and "
            f"the names in FACEFORGE_ALLOWED_HOSTS, not to {host!r}; add the name there, or set "
            "FACEFORGE_ADMIN_KEYS",
            403,
        )
    origin = headers.get("origin")
    foreign = origin is not None and _origin_host(origin) != host.lower()
    if foreign and origin is not None and origin.lower() not in settings.cors_origin_set:
        return AuthError(
            "foreign_origin",
            f"faceforge runs without API keys and refuses requests from web pages of other origins "
            f"({origin}); set FACEFORGE_ADMIN_KEYS, or name the page's origin in FACEFORGE_CORS_ORIGINS",
            403,
        )
    return None


def access_error(
    settings: Settings, headers: Headers, client_host: str | None, needed: Access | None
) -> AuthError | None:
    """Why this request may not proceed, or ``None``. ``needed`` is ``None`` for public pages (docs)."""
    if not settings.auth_enabled:
        if settings.open_network_without_keys or _loopback(client_host):
            return browser_error(settings, headers)
        return AuthError(
            "keys_required",
            "faceforge runs without API keys and answers only loopback clients; set FACEFORGE_ADMIN_KEYS "
            "(or FACEFORGE_OPEN_NETWORK_WITHOUT_KEYS=true to accept anyone on the network)",
            403,
        )
    if needed is None or needed is Access.PUBLIC:
        return None
    key = presented_key(headers)
    if key is None:
        return AuthError("unauthorized", "an API key is required (X-API-Key or Authorization: Bearer)", 401)
    if _matches(key, settings.admin_key_set):
        return None
    if _matches(key, settings.read_key_set):
        if needed is Access.READ:
            return None
        # Not only writes: people's photos, thumbnails and face crops are for admins too.
        return AuthError("forbidden", "this needs an admin key: changes, and people's photos and faces", 403)
    return AuthError("unauthorized", "the API key is not valid", 401)


def presented_access(settings: Settings, headers: Headers) -> Access | None:
    """What the key in ``headers`` may do (``None``: no key, or not one of ours)."""
    key = presented_key(headers)
    if key is None:
        return None
    if _matches(key, settings.admin_key_set):
        return Access.ADMIN
    return Access.READ if _matches(key, settings.read_key_set) else None


_KEY_HEADERS = {b"x-api-key", b"authorization"}


def form_key_error(request: Request, key: str | None, needed: Access) -> AuthError | None:
    """``access_error`` for APIs that send their key in the form body (DeepStack's ``api_key``):
    those routes are public to the middleware and check the key once the form is read."""
    # The request's own headers (Host, Origin), with the form's key as the only key presented.
    raw = [(name, value) for name, value in request.headers.raw if name not in _KEY_HEADERS]
    headers = Headers(raw=raw + ([(b"x-api-key", key.encode())] if key else []))
    client = request.client.host if request.client else None
    error = access_error(_settings(request), headers, client, needed)
    if error is not None and not key and error.code == "unauthorized":
        # Said in these clients' own terms: they send the key in the form, not a header.
        return AuthError("unauthorized", "an API key is required: the form field api_key", 401)
    return error


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _requirement(needed: Access) -> Callable[..., Awaitable[None]]:
    """The dependency that checks ``needed`` (the key parameters put the schemes in OpenAPI).
    Asynchronous because it never blocks: FastAPI would run a plain function on a worker thread."""

    async def require(
        request: Request,
        _key: Annotated[str | None, Security(_api_key_header)],
        _bearer_key: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> None:
        client = request.client.host if request.client else None
        if error := access_error(_settings(request), request.headers, client, needed):
            raise error

    require.__name__ = f"require_{needed.value}"
    return require


require_public = _requirement(Access.PUBLIC)
require_read = _requirement(Access.READ)
require_admin = _requirement(Access.ADMIN)
PublicAccess = Depends(require_public)
ReadAccess = Depends(require_read)
AdminAccess = Depends(require_admin)
_LEVELS = {require_public: Access.PUBLIC, require_read: Access.READ, require_admin: Access.ADMIN}


def declared_access(route: BaseRoute) -> Access | None:
    """The access level a route's router declared, or ``None`` (docs pages and undeclared routes)."""
    if not isinstance(route, APIRoute):
        return None
    levels = {_LEVELS[d.dependency] for d in route.dependencies if d.dependency in _LEVELS}
    if len(levels) > 1:
        raise ValueError(f"{route.path} declares more than one access level")
    return next(iter(levels), None)


KNOWN_PATHS = 4096


class AccessMiddleware:
    """Refuses requests without the access their route needs before the body is read; also
    refuses a declared ``Content-Length`` over the request limit at once."""

    def __init__(self, app: ASGIApp, *, settings: Settings, routes: list[BaseRoute]) -> None:
        self.app = app
        self.settings = settings
        self.routes = routes
        # (method, path) -> what its route needs: matching walks every route, and the same paths
        # (model info, probes) come again and again.
        self._known: dict[tuple[str, str], Access | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = scope.get("client")
        error = access_error(self.settings, headers, client[0] if client else None, self._needed(scope))
        response: JSONResponse | None = None
        if error is not None:
            response = JSONResponse(
                error_body(error.code, error.message, dialect=self._dialect(scope)), error.status
            )
        elif (
            declared := _declared_length(headers)
        ) is not None and declared > self.settings.limits.max_request_bytes:
            message = f"the request body is larger than {self.settings.limits.max_request_bytes} bytes"
            response = JSONResponse(
                error_body("request_too_large", message, dialect=self._dialect(scope)), 413
            )
        if response is not None:
            # The body is never read; closing the connection keeps a client from sending it anyway.
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _dialect(self, scope: Scope) -> Dialect:
        return dialect_of(str(scope.get("path", "")))

    def _needed(self, scope: Scope) -> Access | None:
        key = (str(scope.get("method", "")), str(scope.get("path", "")))
        if key in self._known:
            return self._known[key]
        needed = self._match(scope)
        if len(self._known) >= KNOWN_PATHS:
            self._known.clear()  # paths with ids are endless; the frequent ones come straight back
        self._known[key] = needed
        return needed

    def _match(self, scope: Scope) -> Access | None:
        partial: BaseRoute | None = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return declared_access(route)
            if match is Match.PARTIAL and partial is None:
                partial = route
        # A wrong method (405) is answered only to callers who may use the path.
        return declared_access(partial) if partial is not None else None


def _declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None
