"""Files a killed process left behind, swept by the worker that takes the trainer's lease.

- Model directories: staging directories (``.v<N>-...``) and directories of versions that are not
  ready (building, failed, pruned, or unknown). With the lease held no other worker is writing one,
  so they go at once.
- Enrolment photos and strangers' photos: files no photo row names, and unfinished ``.tmp`` files.
  An API process writes a photo's file just before committing its row, so only files older than a
  grace period are taken.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from faceforge.core.records import VersionStatus
from faceforge.storage import strangers_store
from faceforge.storage.tables import ModelVersionRow, PhotoRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SweptFiles:
    model_dirs: list[str]
    photo_files: list[str]


def sweep_orphans(
    session: Session,
    *,
    models_dir: Path,
    photos_dir: Path,
    grace_seconds: float,
    stranger_photos_dir: Path,
) -> SweptFiles:
    ready = {
        str(version)
        for version in session.scalars(
            select(ModelVersionRow.version).where(ModelVersionRow.status == VersionStatus.READY)
        )
    }
    model_dirs = [
        entry
        for entry in (sorted(models_dir.iterdir()) if models_dir.is_dir() else [])
        if entry.is_dir()
        and entry.name not in ready
        and (entry.name.startswith(".v") or entry.name.isdigit())
    ]
    for entry in model_dirs:
        shutil.rmtree(entry, ignore_errors=True)

    known = set(session.scalars(select(PhotoRow.stored_name)))
    photo_files = _unnamed_files(photos_dir, known, grace_seconds)
    photo_files += _unnamed_files(stranger_photos_dir, strangers_store.stored_names(session), grace_seconds)
    swept = SweptFiles([p.name for p in model_dirs], [p.name for p in photo_files])
    if swept.model_dirs or swept.photo_files:
        log.info(
            "removed files left by a stopped process: %d model directories, %d photo files",
            len(swept.model_dirs),
            len(swept.photo_files),
        )
    return swept


def _unnamed_files(directory: Path, known: set[str], grace_seconds: float) -> list[Path]:
    """Remove the files of ``directory`` that no row names and are older than the grace period."""
    if not directory.is_dir():
        return []
    old_enough = time.time() - grace_seconds
    files = [
        entry
        for entry in sorted(directory.iterdir())
        if entry.is_file() and entry.name not in known and entry.stat().st_mtime < old_enough
    ]
    for entry in files:
        entry.unlink(missing_ok=True)
    return files
