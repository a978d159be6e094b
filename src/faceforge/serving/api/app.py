"""The app factory: lifespan (storage, models, embedded worker), access and size limits, error
handlers, routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from faceforge import __version__
from faceforge.core.config import Settings, get_settings
from faceforge.core.parent_watch import parent_from_environment, terminate_when_orphaned
from faceforge.serving.api.access import AccessMiddleware
from faceforge.serving.api.compression import CompressionMiddleware
from faceforge.serving.api.cross_origin import CrossOriginMiddleware, CrossOriginPolicy
from faceforge.serving.api.deps import one_value_per_query_parameter
from faceforge.serving.api.errors import install_error_handlers
from faceforge.serving.api.http_defaults import HttpDefaultsMiddleware
from faceforge.serving.api.metrics import MetricsMiddleware, ServiceMetrics
from faceforge.serving.api.multipart_end import MultipartEndMiddleware
from faceforge.serving.api.photo_requests import PhotoRequestMiddleware
from faceforge.serving.api.routes import (
    client,
    compreface,
    deepstack,
    health,
    identify,
    legacy,
    metrics,
    models,
    people,
    strangers,
    web,
)
from faceforge.serving.api.served_by import ServedByMiddleware
from faceforge.serving.wiring import Services


def create_supervised_app() -> FastAPI:
    """``create_app`` in one of the API processes of ``serve --workers N``, whose supervisor names
    itself in ``PARENT_PID_ENV``: the process shuts down as on SIGTERM (uvicorn's graceful exit) if the
    supervisor is killed outright, instead of serving the port on with nobody to stop it."""
    supervisor = parent_from_environment()
    if supervisor is not None:
        terminate_when_orphaned(supervisor, "API process")
    return create_app()


def create_app(settings: Settings | None = None, *, embedded_worker: bool | None = None) -> FastAPI:
    """Build the app. ``embedded_worker`` (default: settings) runs one training worker in this process."""
    resolved = settings or get_settings()
    run_worker = resolved.worker.embedded if embedded_worker is None else embedded_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await run_in_threadpool(
            Services.start, resolved, embedded_worker=run_worker, metrics=service_metrics
        )
        app.state.services = services
        try:
            yield
        finally:
            await run_in_threadpool(services.close)

    service_metrics = ServiceMetrics()
    app = FastAPI(title="faceforge", version=__version__, lifespan=lifespan)
    app.state.settings = resolved
    app.state.cross_origin = CrossOriginPolicy(resolved.cors_origin_set)
    install_error_handlers(app)
    limits = resolved.limits
    # Matched in this order, one route after another: the most frequent callers first (probes, and
    # model info, which every phone asks on start). No two modules' paths overlap.
    modules = [health, legacy, models, identify, people, strangers, web, client, metrics]
    modules += [compreface] if resolved.compat.compreface else []
    modules += [deepstack] if resolved.compat.deepstack else []
    routers = [router for module in modules for router in module.routers]
    # The APIs' routers refuse a repeated query parameter; the dashboard's files, the probes and
    # /metrics read none.
    unchecked = (web, client, metrics, health)
    query_checked = {id(r) for module in modules if module not in unchecked for r in module.routers}
    # Every route of ours, each carrying its router's access declaration (what AccessMiddleware and
    # the 405 handler consult; FastAPI's own route table holds included routers, not routes).
    app.state.api_routes = [route for router in routers for route in router.routes]
    for router in routers:
        # The body limit is per route, not app-wide: Starlette's app-wide limiter replaces any
        # answer to an oversized declared body with plain text; AccessMiddleware answers those.
        app.include_router(
            router,
            max_body_size=limits.max_request_bytes,
            form_limits={"max_files": limits.max_photos_per_request},
            dependencies=[Depends(one_value_per_query_parameter)] if id(router) in query_checked else [],
        )
    app.add_middleware(MultipartEndMiddleware)  # a multipart body cut short is refused, not half read
    app.add_middleware(AccessMiddleware, settings=resolved, routes=app.state.api_routes)
    app.add_middleware(MetricsMiddleware, metrics=service_metrics)  # around access: refusals count too
    app.add_middleware(ServedByMiddleware)
    app.add_middleware(CompressionMiddleware)  # compresses every answer, refusals too
    # Outermost: HEAD is routed as GET before access is checked, and every answer says how to cache it.
    app.add_middleware(HttpDefaultsMiddleware, routes=app.state.api_routes)
    # Around everything: a browser's preflight carries no key, and refusals need the CORS headers too
    # (an unexpected error's 500 is answered further out, by Starlette: its handler adds them).
    app.add_middleware(CrossOriginMiddleware, policy=app.state.cross_origin)
    # Outside all of it: the cores are not spun from a photo request's first byte to its answer's last.
    app.add_middleware(PhotoRequestMiddleware)
    _document_validation_as_answered(app)
    return app


def _document_validation_as_answered(app: FastAPI) -> None:
    """FastAPI documents a 422 "Validation Error" (its own body) on every route with parameters, but
    invalid input is answered 400 in each API's own shape (``errors``): a client generated from the
    document expected a body no route sends. Routes whose 422 means something (photos refused)
    declare it themselves and keep it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    responses = operation.get("responses", {})
                    if responses.get("422", {}).get("description") == "Validation Error":
                        del responses["422"]
            shapes = schema.get("components", {}).get("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                shapes.pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
