"""The browser client (public files: they hold no data; the models come from the API with a key).

- ``GET /client/faceforge.js`` and ``/client/contract.js``: the ES modules (``serving/web/static/client``);
- ``GET /client/ort/{name}``: ONNX Runtime Web's WebAssembly build, from the npm package that
  ``make install`` puts in ``client/node_modules`` (``Settings.client_runtime_dir``); without it,
  503 ``client_runtime_missing``;
- ``GET /live``: the camera page, cross-origin isolated so ONNX Runtime Web may use threads, and its
  service worker ``GET /live-sw.js`` (the page reloads without the server).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from faceforge.core.errors import ClientRuntimeMissingError, NotFoundError
from faceforge.serving.api.access import PublicAccess
from faceforge.serving.api.byte_ranges import RangedFileResponse
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
# Pages that import the client from another origin may be cross-origin isolated themselves; ONNX
# Runtime Web's worker scripts must state the embedder policy too, or an isolated page may not run them.
SHARED = {"Cross-Origin-Resource-Policy": "cross-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
ISOLATED = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


def _static(*parts: str) -> bytes:
    return resources.files("faceforge.serving.web").joinpath("static", *parts).read_bytes()


def runtime_dir(request: Request) -> Path:
    folder: Path = request.app.state.settings.client_runtime_path
    return folder


@public.get("/client/{name}")
def client_module(name: str) -> Response:
    if name not in MODULES:
        raise NotFoundError(f"no client file {name!r}")
    headers = {"Cache-Control": CACHING, **SHARED}
    return Response(_static("client", name), media_type="text/javascript", headers=headers)


@public.get("/client/ort/{name}")
def client_runtime(request: Request, name: str) -> Response:
    if name not in RUNTIME:
        raise NotFoundError(f"no runtime file {name!r}")
    path = runtime_dir(request) / name
    if not path.is_file():
        raise ClientRuntimeMissingError(
            f"ONNX Runtime Web is not installed at {path.parent}: run `make install` (npm ci in client/) "
            "or set FACEFORGE_CLIENT_RUNTIME_DIR to its dist folder"
        )
    headers = {"Cache-Control": RUNTIME_CACHING, **SHARED}
    return RangedFileResponse(path, media_type=RUNTIME[name], headers=headers)


@public.get("/live")
def live_page() -> Response:
    headers = {"Cache-Control": CACHING, **ISOLATED, **NOT_FRAMED}
    return Response(_static("live.html"), media_type="text/html", headers=headers)


@public.get("/live-sw.js")
def live_service_worker() -> Response:
    """The camera page's service worker (it reloads offline); served beside /live for its scope."""
    headers = {"Cache-Control": CACHING, **SHARED}
    return Response(_static("client", "live-sw.js"), media_type="text/javascript", headers=headers)
