"""``/metrics``: Prometheus's text format (``serving.api.metrics``). It needs a read key once keys are set;
Prometheus presents one with ``authorization: {credentials: <key>}`` in its scrape config."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from faceforge.serving.api.access import ReadAccess
from faceforge.serving.api.deps import ServicesDep
from faceforge.serving.api.errors import SERVER_ERRORS, error_responses

read = APIRouter(
    tags=["operations"], dependencies=[ReadAccess], responses=error_responses(401, 403, *SERVER_ERRORS)
)
routers = (read,)


@read.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
def metrics(services: ServicesDep) -> Response:
    """Request counts and latency by route, identified faces, trainings, current version, queue."""
    body = services.metrics.exposition(services.models, trainer=services.trainer)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
