"""The browser client (public files: they hold no data; the models come from the API with a key).

- ``GET /client/faceforge.js`` and ``/client/contract.js``: the ES modules (``serving/web/static/client``);
- ``GET /client/ort/{tag}/{name}``: ONNX Runtime Web's WebAssembly build, from the npm package that
  ``make install`` puts in ``client/node_modules`` (``Settings.client_runtime_dir``); without it,
  503 ``client_runtime_missing``. ``tag`` names the installed files' contents, and the modules that
  load them (``faceforge.js``, ``live-sw.js``) are served naming it, so a browser never pairs a new
  client with an old runtime after an upgrade, and may keep a runtime for good. ``/client/ort/{name}``
  stays for pages from before the tag, kept a day;
- ``GET /live``: the camera page, cross-origin isolated so ONNX Runtime Web may use threads, and its
  service worker ``GET /live-sw.js`` (the page reloads without the server).
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from faceforge.core.errors import ClientRuntimeMissingError, NotFoundError
from faceforge.serving.api.access import PublicAccess
from faceforge.serving.api.byte_ranges import RangedFileResponse, matches_any
from faceforge.serving.api.compression import COMPRESS_LEVEL
from faceforge.serving.api.routes.web import NOT_FRAMED

public = APIRouter(include_in_schema=False, dependencies=[PublicAccess])
routers = (public,)

MODULES = {"faceforge.js", "contract.js", "live.js"}
# ONNX Runtime Web's files the client loads: the ES module and its WebAssembly (SIMD, threads).
RUNTIME = {
    "ort.wasm.min.mjs": "text/javascript",
    "ort-wasm-simd-threaded.mjs": "text/javascript",
    "ort-wasm-simd-threaded.wasm": "application/wasm",
}
CACHING = "no-cache"
# Kept a day: /live's runtime worker fetches its script past the service worker, from the HTTP cache,
# so "no-cache" (revalidated at each load) left a kiosk reloaded while faceforge was away at
# "Connecting…" for good. After an upgrade of the runtime, a browser may keep the old one up to a day.
RUNTIME_CACHING = "public, max-age=86400"
# A tagged runtime path names its contents: cached for good, never revalidated.
TAGGED_RUNTIME_CACHING = "public, max-age=31536000, immutable"
# How the client's own files name the runtime's folder: relative in faceforge.js, absolute in live-sw.js.
RUNTIME_REFERENCES = {"faceforge.js": "./ort/", "live-sw.js": "/client/ort/"}
# Pages that import the client from another origin may be cross-origin isolated themselves; ONNX
# Runtime Web's worker scripts must state the embedder policy too, or an isolated page may not run them.
SHARED = {"Cross-Origin-Resource-Policy": "cross-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
ISOLATED = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


def _static(*parts: str) -> bytes:
    return resources.files("faceforge.serving.web").joinpath("static", *parts).read_bytes()


def runtime_dir(request: Request) -> Path:
    folder: Path = request.app.state.settings.client_runtime_path
    return folder


def runtime_tag(folder: Path) -> str:
    """A name for the runtime files installed in ``folder`` (a digest of their contents), or
    "missing" while any is missing. Hashed once per change of the files (about 12 MB)."""
    try:
        stats = tuple((name, *_stamp(folder / name)) for name in sorted(RUNTIME))
    except OSError:
        return "missing"
    return _digest(folder, stats)


def _stamp(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


@lru_cache(maxsize=4)
def _digest(folder: Path, stats: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stats:
        digest.update(name.encode() + b"\0")
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


def _naming_the_runtime(request: Request, name: str) -> bytes:
    """The client's file ``name``, its references to the runtime's folder naming the installed tag."""
    reference = RUNTIME_REFERENCES[name]
    tag = runtime_tag(runtime_dir(request))
    return _static("client", name).replace(reference.encode(), f"{reference}{tag}/".encode())


@public.get("/client/{name}")
def client_module(request: Request, name: str) -> Response:
    if name not in MODULES:
        raise NotFoundError(f"no client file {name!r}")
    headers = {"Cache-Control": CACHING, **SHARED}
    source = _naming_the_runtime(request, name) if name in RUNTIME_REFERENCES else _static("client", name)
    return Response(source, media_type="text/javascript", headers=headers)


def _runtime_file(request: Request, name: str) -> Path:
    if name not in RUNTIME:
        raise NotFoundError(f"no runtime file {name!r}")
    path = runtime_dir(request) / name
    if not path.is_file():
        raise ClientRuntimeMissingError(
            f"ONNX Runtime Web is not installed at {path.parent}: run `make install` (npm ci in client/) "
            "or set FACEFORGE_CLIENT_RUNTIME_DIR to its dist folder"
        )
    return path


@public.get("/client/ort/{name}")
def client_runtime(request: Request, name: str) -> Response:
    """The runtime at its untagged path, for a page loaded before the tag: kept a day."""
    path = _runtime_file(request, name)
    headers = {"Cache-Control": RUNTIME_CACHING, **SHARED}
    return RangedFileResponse(path, media_type=RUNTIME[name], headers=headers)


@public.get("/client/ort/{tag}/{name}")
def tagged_client_runtime(request: Request, tag: str, name: str) -> Response:
    path = _runtime_file(request, name)
    current = runtime_tag(path.parent)
    if tag != current:
        # Another install's runtime (the page was loaded before an upgrade): never this one's files
        # under its name, or a browser would keep them for good as that runtime.
        raise NotFoundError(
            f"runtime {tag!r} is not installed here (this server's is {current!r}): reload the page"
        )
    headers = {"Cache-Control": TAGGED_RUNTIME_CACHING, "Vary": "Accept-Encoding", **SHARED}
    if "range" in request.headers or not _accepts_gzip(request.headers.get("accept-encoding", "")):
        return RangedFileResponse(path, media_type=RUNTIME[name], headers=headers)
    # gzipped (the WASM 14.8 MB -> 3.8 of a browser's first load) under an entity tag of its own, so
    # it is never taken for the plain file's bytes; a range is always of the plain file.
    etag = f'"{current}-{name}-gzip"'
    headers |= {"ETag": etag}
    if matches_any(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    body = _gzipped(path, current)
    headers |= {"Content-Encoding": "gzip"}
    return Response(body, media_type=RUNTIME[name], headers=headers)


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` (RFC 9110 12.5.3) takes gzip: named (or else ``*``) with a weight
    above 0."""
    weights: dict[str, float] = {}
    for element in accept_encoding.split(","):
        coding, *parameters = (part.strip().lower() for part in element.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if coding:
            weights[coding] = weight
    named = [weights[coding] for coding in ("gzip", "x-gzip") if coding in weights]
    return max(named) > 0 if named else weights.get("*", 0.0) > 0


_compressing = threading.Lock()


@lru_cache(maxsize=len(RUNTIME))
def _gzip_of(path: Path, tag: str) -> bytes:
    return gzip.compress(path.read_bytes(), compresslevel=COMPRESS_LEVEL, mtime=0)


def _gzipped(path: Path, tag: str) -> bytes:
    """``path`` gzipped, once per runtime ``tag`` (about half a second for the WASM), kept in memory."""
    with _compressing:  # two first loads at once compress it once
        return _gzip_of(path, tag)


@public.get("/live")
def live_page() -> Response:
    headers = {"Cache-Control": CACHING, **ISOLATED, **NOT_FRAMED}
    return Response(_static("live.html"), media_type="text/html", headers=headers)


@public.get("/live-sw.js")
def live_service_worker(request: Request) -> Response:
    """The camera page's service worker (it reloads offline); served beside /live for its scope. It
    names the runtime's tag, so an upgraded runtime also installs a new worker and its cache."""
    headers = {"Cache-Control": CACHING, **SHARED}
    source = _naming_the_runtime(request, "live-sw.js")
    return Response(source, media_type="text/javascript", headers=headers)
