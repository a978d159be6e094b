"""Request dependencies: the lifespan's services, the bounds every id in a path or query obeys, and
one value per query parameter."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from pydantic import AfterValidator, BeforeValidator

from faceforge.core.errors import RequestRejectedError
from faceforge.core.stored_text import never_stored
from faceforge.serving.wiring import Services
from faceforge.storage.tables import MAX_ID


async def get_services(request: Request) -> Services:
    """Asynchronous because it never blocks: FastAPI would run a plain function on a worker thread."""
    services: Services = request.app.state.services
    return services


# Query parameters a route takes as a list: CompreFace's `face_plugins` (its server joins repeats).
REPEATABLE_QUERY = frozenset({"face_plugins"})


async def one_value_per_query_parameter(request: Request) -> None:
    """Every API route's: a name given twice in the query (``?limit=5&limit=500``) is refused. FastAPI
    took the last value silently, so a client that built its URL wrong got an answer to a question
    it did not ask. Only ``REPEATABLE_QUERY`` may repeat. (Not on the dashboard's pages or
    ``/metrics``, which ignore their query: a link with a tracking parameter twice still opens.)"""
    names = [name for name, _ in request.query_params.multi_items() if name not in REPEATABLE_QUERY]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RequestRejectedError(
            "invalid_request", f"{', '.join(repeated)}: given more than once in the query; give each once"
        )


def _digits(value: Any) -> Any:
    """An id in a path is written in ASCII digits only: `%201`, `+1`, `1_0` or `１` name nothing
    (the number parser would read each as an id)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("an id is written in digits only")
    return value


def _no_control_characters(value: str | None) -> str | None:
    """Names, external ids and sources never hold control characters (``services.people``), so a
    filter with one matches nothing; said plainly rather than passed on, where SQLite cut a LIKE
    pattern at a NUL (``q=%00`` matched everyone) and PostgreSQL refuses NUL in text (a 500)."""
    if value is not None and never_stored(value):
        raise ValueError("must not contain control characters (no name, id or source holds one)")
    return value


ServicesDep = Annotated[Services, Depends(get_services)]
# Text a list is filtered by (a name's part, an external id, a stranger's source).
TextFilter = AfterValidator(_no_control_characters)
PathId = BeforeValidator(_digits)
PersonId = Annotated[int, Path(ge=1, le=MAX_ID, description="a person's id"), PathId]
PhotoId = Annotated[int, Path(ge=1, le=MAX_ID, description="a photo's id"), PathId]
VersionNumber = Annotated[int, Path(ge=1, le=MAX_ID, description="a model version"), PathId]
# A photo's file scaled down for display (the dashboard's tiles): people's and strangers' alike.
SizeQuery = Annotated[
    int | None,
    Query(ge=32, le=2048, description="scale the photo (a JPEG) so its longer side is at most this many px"),
]
