"""``/healthz`` (the process answers) and ``/readyz`` (it can serve: database reachable, migrations
current, the home writable with room to spare, the current model version loadable or none yet, and
the trainer running if this process embeds one), for load balancers and orchestrators.

Both are public: they say nothing about people or models beyond a version number."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from faceforge.core.errors import FaceforgeError, ModelNotReadyError
from faceforge.serving.api.access import PublicAccess
from faceforge.serving.api.deps import ServicesDep
from faceforge.storage.engine import migrations_current

router = APIRouter(tags=["health"], dependencies=[PublicAccess])
routers = (router,)
# Written and removed on every probe: as much as a small write needs (a page), so a full disk shows.
PROBE_BYTES = 4096


def storage_check(home: Path) -> str:
    """``ok``, ``full``, or ``unwritable: <why>``: whether photos and versions can be written to ``home``."""
    try:
        home.mkdir(parents=True, exist_ok=True)  # made on the first write otherwise
        with tempfile.NamedTemporaryFile(dir=home, prefix=".readyz-") as probe:
            probe.write(b"\0" * PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return "full"
        return f"unwritable: {error.strerror or type(error).__name__}"
    return "ok"


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready, with the checks that failed"}})
def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, Any] = {"storage": storage_check(services.settings.home)}
    try:
        checks["migrations"] = "current" if migrations_current(services.engine) else "behind"
        checks["database"] = "ok"
    except SQLAlchemyError as error:
        checks["database"] = f"unreachable: {type(error).__name__}"
    if checks.get("database") == "ok":
        try:
            checks["model_version"] = services.models.loaded(None).version
        except ModelNotReadyError as error:
            none_yet = services.models.training_status().current_version is None
            checks["model_version"] = None if none_yet else f"not loadable: {error.message}"
        except FaceforgeError as error:
            checks["model_version"] = f"not loadable: {error.message}"
    # The embedding graph this process chose at start-up (None until its networks load).
    checks["embedder"] = services.pipeline.embedder.precision
    graph = services.pipeline.embedder.graph  # which file: an int8 graph's 7-bit twin ends with -w7
    checks["embedder_graph"] = None if graph is None else graph.name
    if services.trainer is not None:  # the trainer embedded in this process: changes become versions
        checks["trainer"] = services.trainer.describe()
    ready = (
        checks["storage"] == "ok"
        and checks.get("database") == "ok"
        and checks.get("migrations") == "current"
        and not isinstance(checks.get("model_version"), str)
        and checks.get("trainer", "running") == "running"
    )
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", **checks}, status_code=200 if ready else 503
    )
