"""gzip for what compresses and is asked for often: the dashboard's files and JSON answers.

Starlette's ``GZipMiddleware`` does the work (only for clients that send ``Accept-Encoding: gzip``,
never for a 206 range answer). Model files are left as they are: they are downloaded by range and
checked against the sha256 in the manifest, and the large ones (ONNX graphs, weights) barely
compress while costing a core each; so is ONNX Runtime Web's build for the browser client (ranges
and one ETag). Photos are already compressed."""

from __future__ import annotations

from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

MINIMUM_BYTES = 1024  # a smaller answer gains less than the gzip header and the work cost
COMPRESS_LEVEL = 6  # zlib's default: nearly level 9's size at a third of the time
NOT_COMPRESSED = (*DEFAULT_EXCLUDED_CONTENT_TYPES, "image/*", "application/octet-stream")
MODEL_FILES = "/files/"  # /api/v1/models/{version}/files/{name}
# ONNX Runtime Web's files are served by range with a strong ETag, as model files are: gzipped, the
# compressed and the plain answer shared one ETag, so a resumed download could mix the two.
CLIENT_RUNTIME = "/client/ort/"


class CompressionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(
            app,
            minimum_size=MINIMUM_BYTES,
            compresslevel=COMPRESS_LEVEL,
            exclude_content_types=NOT_COMPRESSED,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and MODEL_FILES not in scope["path"]
            and CLIENT_RUNTIME not in scope["path"]
        ):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
