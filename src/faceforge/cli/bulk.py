"""``faceforge import``: wires the bulk importer to the local home or a server, shows progress, and
waits for the one model version the import asks for."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceforge.cli.progress import ProgressDisplay
from faceforge.core.config import Settings
from faceforge.core.errors import DatasetError, TrainingError
from faceforge.serving.services.bulk_import import (
    BulkImporter,
    FolderPerson,
    ImportSummary,
    LocalTarget,
    loose_photos,
    scan_folders,
    scan_strangers,
)

if TYPE_CHECKING:
    from faceforge.serving.wiring import Services

log = logging.getLogger(__name__)

WAIT_SECONDS = 900.0


def run_import(
    folder: Path | None,
    *,
    strangers: Path | None = None,
    settings: Settings,
    server: str | None,
    api_key: str | None,
    wait: bool,
) -> ImportSummary:
    """Import the people of ``folder`` and the strangers of ``strangers`` (either may be ``None``,
    not both) into the home of ``settings`` or into ``server``."""
    if folder is None and strangers is None:
        raise DatasetError("give a folder of people, --strangers FOLDER, or both")
    people = scan_folders(folder) if folder is not None else []
    others = scan_strangers(strangers) if strangers is not None else []
    if server is not None:
        summary = _into_server(people, others, server, api_key, wait=wait)
    else:
        summary = _into_home(people, others, settings, wait=wait)
    summary.ignored = [str(photo) for photo in loose_photos(folder)] if folder is not None else []
    return summary


def _into_server(
    people: list[FolderPerson], strangers: list[FolderPerson], server: str, api_key: str | None, *, wait: bool
) -> ImportSummary:
    from faceforge.cli.http_target import HttpTarget

    target = HttpTarget(server, api_key)
    try:
        # An unreachable server or a refused key: one line, before any progress.
        failed_before = _failure_version(target.training().get("last_failure"))
        with ProgressDisplay() as display:
            summary = BulkImporter(target, on_progress=display.update).run(people, strangers)
            if summary.training_requested and wait and not summary.interrupted:
                display.say("waiting for the server to train the new version")
                summary.version = target.wait_for_version()
                failure = target.training().get("last_failure")
                if _failure_version(failure) != failed_before and isinstance(failure, dict):
                    summary.not_current = _not_current(
                        _failure_version(failure), failure.get("message"), summary.version
                    )
            else:
                summary.version = target.current_version()
    finally:
        target.close()
    return summary


def _failure_version(failure: Any) -> int | None:
    """The version of ``GET /api/v1/training``'s ``last_failure`` (null, or an object)."""
    version = failure.get("version") if isinstance(failure, dict) else None
    return version if isinstance(version, int) else None


def _not_current(version: int | None, message: Any, current: int | None) -> dict[str, Any] | None:
    """A version this import trained that is not current: held back (built, not made current) or
    failed, with the reason, for the summary (``ImportSummary.not_current``)."""
    if version is None or (current is not None and version <= current):
        return None
    return {"version": version, "message": str(message or "the training failed")}


def _into_home(
    people: list[FolderPerson], strangers: list[FolderPerson], settings: Settings, *, wait: bool
) -> ImportSummary:
    from faceforge.serving.vision.embedder import torch_installed
    from faceforge.serving.wiring import Services
    from faceforge.storage import training_store

    # One analysis thread per person and one more person than cores: while some people's photos are
    # analysed, another's are written (files and rows are fsynced), so the cores stay busy.
    cores = settings.limits.vision_concurrency
    services = Services.start(
        settings.model_copy(update={"workers": 1}), embedded_worker=False, keep_cores_awake=False
    )
    try:
        failed_before = services.models.training_status().last_failure_version
        with ProgressDisplay() as display:
            importer = BulkImporter(
                LocalTarget(services.people, services.strangers),
                on_progress=display.update,
                concurrency=cores + 1,
            )
            summary = importer.run(people, strangers)
            earlier = False
            if not summary.training_requested and wait and not summary.interrupted:
                # The next run completes the last: one stopped while it trained (or run with
                # --no-wait) left its version asked for and never built, and a run that found
                # nothing new trained nothing, leaving the home with people and no model.
                pending = services.models.training_status()
                earlier = pending.requested > pending.built
            training = summary.training_requested or earlier
            if training and wait and not summary.interrupted and not torch_installed():
                # A serve-only install stores photos but trains nothing (no PyTorch, no converters).
                display.say("this install does not train: `faceforge worker` on this home builds the version")
            elif training and wait and not summary.interrupted:
                from faceforge.building.worker.trainer import TrainingWorker  # the worker install's

                worker = TrainingWorker(settings, services.sessions)
                display.say(
                    "training the new version"
                    if not earlier
                    else "training the version an earlier run asked for"
                )
                try:
                    trained = worker.run_once()
                except KeyboardInterrupt:
                    # Stopped while training: the photos are stored and the version asked for, so
                    # the next run trains it. Said, with the summary (it ended with neither).
                    summary.interrupted = trained = True
                    display.say("interrupted while training: the next run trains the version")
                finally:
                    worker.lease.release()
                if not trained:
                    # A server on this home holds the trainer's lease: its worker trains the version.
                    display.say("waiting for the faceforge server on this home to train the new version")
                    _wait_until_built(services, timeout=WAIT_SECONDS)
                # Said as trained only once it is (not when stopped, nor where this install trains nothing).
                summary.trained_earlier_request = earlier and not summary.interrupted
            with services.sessions() as session:
                summary.version = training_store.current_version(session)
            status = services.models.training_status()
            if training and status.last_failure_version != failed_before:
                summary.not_current = _not_current(
                    status.last_failure_version, status.last_failure_message, summary.version
                )
    finally:
        services.close()
    return summary


def _wait_until_built(services: Services, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = services.models.training_status()
        if status.state == "idle" and status.built >= status.requested:
            return
        time.sleep(0.5)
    raise TrainingError("the trainer did not build the new version in time")
