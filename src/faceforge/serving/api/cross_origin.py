"""Cross-origin calls (CORS) from the web pages an operator names in ``FACEFORGE_CORS_ORIGINS``.

A team's web app lives on its own origin (``https://app.example.com``) and faceforge on another; a
browser lets the app's scripts read faceforge's answers, send ``X-API-Key`` and import the browser
client (``/client/faceforge.js``, a module script, fetched in CORS mode with its runtime) only when
faceforge says that origin may. Named origins get that on every answer, refusals included, so the
app can read why a call failed (``unauthorized``, ``busy``); preflights (``OPTIONS`` with
``Access-Control-Request-Method``) are answered here, before access is checked, since a browser
sends them without the key. Any other origin gets no permission and its page cannot read anything;
without keys ``serving.api.access`` also refuses its requests outright (a form POST needs no
permission), and lets named origins through.

Every answer says ``Vary: Origin``, named origins or not: one kept by a browser or a shared cache for
a request without ``Origin`` (the dashboard's, /live's: the client's runtime is cached for a day,
model files for a year) would otherwise be handed to a named origin's page, which the browser then
blocks for want of the permission, also when the origin is named after the answer was cached.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS = "X-API-Key, Authorization, Content-Type"
# The headers beyond the always-readable few that an app may act on: a model file's ETag and the
# part a ranged download got, a download's name, when to retry a 503, which API process answered.
EXPOSED_HEADERS = "ETag, Content-Range, Content-Disposition, Retry-After, X-Served-By"
PREFLIGHT_MAX_AGE = "600"  # seconds a browser may reuse a preflight's answer


class CrossOriginPolicy:
    """Which origins' pages may read answers (``Settings.cors_origin_set``), and the headers saying so."""

    def __init__(self, origins: frozenset[str]) -> None:
        self.any_origin = "*" in origins
        self.origins = origins - {"*"}

    def allowed(self, origin: str | None) -> bool:
        return origin is not None and (self.any_origin or origin.lower() in self.origins)

    def answer_headers(self, origin: str | None) -> dict[str, str]:
        """The headers of an answer to a request from ``origin`` (``None``: no ``Origin`` header)."""
        if origin is None or not self.allowed(origin):
            return {"Vary": "Origin"}
        # The origin itself, even for "*": see Vary.
        return {
            "Vary": "Origin",
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        }


class CrossOriginMiddleware:
    def __init__(self, app: ASGIApp, *, policy: CrossOriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if preflight and origin is not None and self.policy.allowed(origin):
            await self._preflight(headers, origin, send)
            return
        added = self.policy.answer_headers(origin)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer = MutableHeaders(scope=message)
                for name, value in added.items():
                    if name == "Vary":
                        answer.add_vary_header(value)
                    else:
                        answer[name] = value
            await send(message)

        await self.app(scope, receive, sending)

    async def _preflight(self, headers: Headers, origin: str, send: Send) -> None:
        answer = MutableHeaders()
        answer["Access-Control-Allow-Origin"] = origin
        answer.add_vary_header("Origin")
        answer["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        answer["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        answer["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        answer["Cache-Control"] = "private, no-store"
        if headers.get("access-control-request-private-network") == "true":
            # Chromium asks before a public page may reach a private or loopback address; the
            # operator named this origin, so it may.
            answer["Access-Control-Allow-Private-Network"] = "true"
        await send({"type": "http.response.start", "status": 204, "headers": answer.raw})
        await send({"type": "http.response.body", "body": b""})
