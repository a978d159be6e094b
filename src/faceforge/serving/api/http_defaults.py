"""HTTP semantics every route shares, kept out of the routes.

- ``HEAD`` works wherever ``GET`` does (the 405 answer's ``Allow`` has always said so): a ``HEAD``
  no route declares is answered as the ``GET`` would be, without its body. Routes that declare
  ``HEAD`` themselves (model files: their headers without reading hundreds of MB) keep it.
- Answers that do not say how to cache them get ``Cache-Control: private, no-store``: they hold
  faces, names or a deployment's state, which no shared cache, and no browser's disk, should keep.
  Routes that know better (a version's immutable files, the dashboard's own files) say so.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NO_STORE = "private, no-store"


class HttpDefaultsMiddleware:
    def __init__(self, app: ASGIApp, *, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD" and self._served_as_get(scope)
        if head:
            scope = {**scope, "method": "GET"}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "cache-control" not in headers:
                    headers["Cache-Control"] = NO_STORE
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, sending)

    def _served_as_get(self, scope: Scope) -> bool:
        """No route declares HEAD here, and one serves GET (elsewhere the 405 names HEAD itself)."""
        if any(route.matches(scope)[0] is Match.FULL for route in self.routes):
            return False
        as_get = {**scope, "method": "GET"}
        return any(route.matches(as_get)[0] is Match.FULL for route in self.routes)
