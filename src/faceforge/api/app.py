"""The app factory: lifespan (storage, models, embedded worker), middleware, error handlers, routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from faceforge import __version__
from faceforge.api.body_limit import BodyLimitMiddleware
from faceforge.api.container import Services
from faceforge.api.errors import install_error_handlers
from faceforge.api.routes import identify, legacy, models, people
from faceforge.config import Settings, get_settings


def create_app(settings: Settings | None = None, *, embedded_worker: bool | None = None) -> FastAPI:
    """Build the app. ``embedded_worker`` (default: settings) runs one training worker in this process."""
    resolved = settings or get_settings()
    run_worker = resolved.worker.embedded if embedded_worker is None else embedded_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await run_in_threadpool(Services.start, resolved, embedded_worker=run_worker)
        app.state.services = services
        try:
            yield
        finally:
            await run_in_threadpool(services.close)

    app = FastAPI(title="faceforge", version=__version__, lifespan=lifespan)
    app.add_middleware(BodyLimitMiddleware, max_bytes=resolved.limits.max_request_bytes)
    install_error_handlers(app)
    for module in (people, models, identify, legacy):
        app.include_router(module.router)
    return app
