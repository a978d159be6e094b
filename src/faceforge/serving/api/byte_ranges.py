"""Range requests on a version's files, answered as RFC 9110 (section 14) asks.

Phones resume a backbone's download with ``Range``. Starlette's ``FileResponse`` answers a Range it
cannot parse with a plain-text 400 and an unsatisfiable one with an empty 416, and refuses a whole
set when any one range lies beyond the file. The RFC instead has a server ignore a Range of a unit it
does not know (it MUST) or of invalid syntax (it MAY), serve the satisfiable ranges of a set, and
answer 416 only when none is. So ``RangedFileResponse`` reads the header first: a Range to ignore is
taken out of the request (the whole file, 200), a set is cut to its satisfiable ranges, and only a set
of which none is satisfiable gets 416, in the API's JSON error shape with ``Content-Range: bytes */size``.
An ``If-Range`` that does not name this file (its ETag or Last-Modified, compared strongly) means the
whole file too. An empty file is always sent whole. An ``If-None-Match`` naming the file's ETag (weak
comparison) is a 304, which Starlette's ``FileResponse`` never answers.
"""

from __future__ import annotations

import os
import re

import anyio
from starlette.datastructures import Headers
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from faceforge.serving.api.errors import dialect_of, error_body

# One range-spec: "first-last", "first-" or "-suffix" (whitespace around is allowed). At most 18
# digits: no file is an exabyte, and Python refuses to read numbers of more than 4,300 digits (a 500).
_SPEC = re.compile(r"\s*(?:(\d{1,18})-(\d{0,18})|-(\d{1,18}))\s*")


def satisfiable_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """The byte ranges (first, last inclusive) of ``header`` that lie in a file of ``size`` bytes.
    ``None``: the header is to be ignored (another unit, not a valid ranges-set, or an empty file,
    which has no bytes to range over and is sent whole); ``[]``: valid, and no range is satisfiable
    (416)."""
    unit, separator, specs = header.partition("=")
    if not separator or unit.strip().lower() != "bytes":
        return None
    elements = [spec for spec in specs.split(",") if spec.strip()]  # the list grammar allows empty ones
    if not elements or size == 0:
        return None
    ranges: list[tuple[int, int]] = []
    for spec in elements:
        match = _SPEC.fullmatch(spec)
        if match is None:
            return None
        first, last, suffix = match.groups()
        if suffix is not None:
            if int(suffix) > 0:
                ranges.append((max(size - int(suffix), 0), size - 1))
            continue
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None  # "5-2" is not a valid range-spec, so neither is the set
        if start < size:
            ranges.append((start, min(end, size - 1)))
    return ranges


class RangedFileResponse(FileResponse):
    """A file whose Range and If-Range are judged as the module docstring says before Starlette
    sends it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        header = headers.get("range")
        reading = scope.get("method", "GET").upper() in ("GET", "HEAD") and self.status_code == 200
        if reading and headers.get("if-none-match") is not None:
            # A cache revalidating (ONNX Runtime Web's files are "no-cache"): 304 while the file is the
            # one it holds. Starlette's FileResponse sent the whole file again every time.
            size = await self._stat()
            if matches_any(headers["if-none-match"], self.headers.get("etag")):
                unchanged = {k: v for k, v in self.headers.items() if k.lower() in _VALIDATORS_AND_POLICY}
                await Response(status_code=304, headers=unchanged)(scope, receive, send)
                return
        if header is None or not reading:
            await super().__call__(scope, receive, send)
            return
        size = await self._stat()
        ranges = satisfiable_ranges(header, size)
        if_range = headers.get("if-range")
        if if_range is not None and if_range.strip() not in (
            self.headers.get("etag"),
            self.headers.get("last-modified"),
        ):
            ranges = None  # the client's part is of another file (or a weak validator): the whole of this one
        if ranges == []:
            body = error_body(
                "range_not_satisfiable",
                f"no range of '{header}' lies within the file's {size} bytes",
                dialect=dialect_of(scope.get("path", "")),
            )
            response = JSONResponse(body, status_code=416, headers={"Content-Range": f"bytes */{size}"})
            await response(scope, receive, send)
            return
        kept = [(name, value) for name, value in scope["headers"] if name != b"range"]
        if ranges is not None:
            value = "bytes=" + ",".join(f"{first}-{last}" for first, last in ranges)
            kept.append((b"range", value.encode("latin-1")))
        await super().__call__({**scope, "headers": kept}, receive, send)

    async def _stat(self) -> int:
        """The file's size, with its own validators set (Starlette would add them only as it sends):
        If-None-Match and If-Range are compared with them. Off the event loop: the home may be on a
        network file system."""
        if self.stat_result is None:
            try:
                self.stat_result = await anyio.to_thread.run_sync(os.stat, self.path)
            except FileNotFoundError:
                raise RuntimeError(f"File at path {self.path} does not exist.") from None
            self.set_stat_headers(self.stat_result)
        return int(self.stat_result.st_size)


# What a 304 repeats of the 200 it stands for: validators, caching, and the embedding policies.
_VALIDATORS_AND_POLICY = {
    "etag", "last-modified", "cache-control", "vary", "cross-origin-resource-policy",
    "cross-origin-embedder-policy",
}  # fmt: skip


def matches_any(if_none_match: str, etag: str | None) -> bool:
    """RFC 9110 13.1.2: ``*``, or any listed entity tag equal to ``etag`` by weak comparison."""
    if etag is None:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = etag.strip().removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in if_none_match.split(","))
