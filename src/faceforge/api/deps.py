"""Request dependencies: the lifespan's services, and the bounds every id in a path or query obeys."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from faceforge.api.container import Services

# Ids are 32-bit in PostgreSQL (and must fit SQLite's 64-bit integers): anything larger names nothing.
MAX_ID = 2**31 - 1


async def get_services(request: Request) -> Services:
    """Asynchronous because it never blocks: FastAPI would run a plain function on a worker thread."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
PersonId = Annotated[int, Path(ge=1, le=MAX_ID, description="a person's id")]
PhotoId = Annotated[int, Path(ge=1, le=MAX_ID, description="a photo's id")]
VersionNumber = Annotated[int, Path(ge=1, le=MAX_ID, description="a model version")]
