"""A multipart body that ends before its closing boundary is refused, not read as far as it goes.

Starlette's form parser keeps every part it saw to the end and drops an unclosed last one without a
word. A body cut short (a client that wrote a length for less than it sent, a proxy's cut, a file
given to ``curl --data-binary`` that was copied half) registered the photos before the cut and lost
the rest: a person of two photos was stored with one, answered 201. The closing delimiter
``--<boundary>--`` is the only sign a multipart body is whole (RFC 2046, 5.1.1), so each such body's
bytes are watched for it as they are read, and the body's last read raises ``IncompleteBodyError``
when it never came; the route answers that in its own API's shape, before anything is stored.
"""

from __future__ import annotations

from python_multipart.multipart import parse_options_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceforge.core.errors import RequestRejectedError


class IncompleteBodyError(RequestRejectedError):
    def __init__(self, boundary: bytes) -> None:
        super().__init__(
            "incomplete_body",
            "the multipart body ends before its closing boundary "
            f"(--{boundary.decode('latin-1')}--): the upload was cut short, and nothing of it was "
            "stored; send it again",
        )


def _boundary(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media_type, options = parse_options_header(value)
            if media_type.lower() == b"multipart/form-data":
                return options.get(b"boundary") or None  # none: Starlette's own error names it
            return None
    return None


class MultipartEndMiddleware:
    """Watches each multipart request body for its closing delimiter (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        boundary = _boundary(scope) if scope["type"] == "http" else None
        if boundary is None:
            await self.app(scope, receive, send)
            return
        closing = b"--" + boundary + b"--"
        tail = b""  # the last bytes read, so a delimiter split between two reads is found
        read = 0
        closed = False

        async def watched() -> Message:
            nonlocal tail, read, closed
            message = await receive()
            if message["type"] != "http.request" or closed:
                return message
            body: bytes = message.get("body", b"")
            read += len(body)
            seen = tail + body
            closed = closing in seen
            tail = seen[-(len(closing) - 1) :]
            # An empty body is no cut upload: no form at all, which the route's own checks answer.
            if not closed and read and not message.get("more_body", False):
                raise IncompleteBodyError(boundary)
            return message

        await self.app(scope, watched, send)
