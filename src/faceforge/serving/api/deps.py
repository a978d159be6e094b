"""Request dependencies: the lifespan's services, and the bounds every id in a path or query obeys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request
from pydantic import BeforeValidator

from faceforge.serving.wiring import Services

# Ids are 32-bit in PostgreSQL (and must fit SQLite's 64-bit integers): anything larger names nothing.
MAX_ID = 2**31 - 1


async def get_services(request: Request) -> Services:
    """Asynchronous because it never blocks: FastAPI would run a plain function on a worker thread."""
    services: Services = request.app.state.services
    return services


def _digits(value: Any) -> Any:
    """An id in a path is written in ASCII digits only: `%201`, `+1`, `1_0` or `１` name nothing
    (the number parser would read each as an id)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("an id is written in digits only")
    return value


ServicesDep = Annotated[Services, Depends(get_services)]
PathId = BeforeValidator(_digits)
PersonId = Annotated[int, Path(ge=1, le=MAX_ID, description="a person's id"), PathId]
PhotoId = Annotated[int, Path(ge=1, le=MAX_ID, description="a photo's id"), PathId]
VersionNumber = Annotated[int, Path(ge=1, le=MAX_ID, description="a model version"), PathId]
