"""Embedding stored photos again when the embedder changes (an upgrade to a new release).

Every photo row records the embedder that described it. Photos described by another embedder are
ignored by training (vectors of different networks cannot share a head), so a worker that holds the
trainer's lease embeds them again from their stored files before it trains: each photo's stored
detector box goes through the same refine, crop and align steps as at enrolment
(``serving.vision.face_input``), so the result equals what enrolling the photo today would store. A photo
whose file is missing or no longer decodes keeps its old row and is left out of training (logged).
Strangers' photos (``storage.strangers_store``) are embedded again the same way: they are training data too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from faceforge.core.errors import InvalidImageError
from faceforge.core.faces import Box
from faceforge.serving.vision.pipeline import FacePipeline
from faceforge.storage import people_store, strangers_store
from faceforge.storage.photo_files import PhotoFiles

log = logging.getLogger(__name__)

BATCH = 64  # photos per transaction


def reembed_stale_photos(
    sessions: sessionmaker[Session],
    pipeline: FacePipeline,
    files: PhotoFiles,
    stranger_files: PhotoFiles,
) -> int:
    """Embed every stale photo (people's from ``files``, strangers' from ``stranger_files``) with
    ``pipeline``'s embedder; returns how many were updated."""
    updated = _reembed(sessions, pipeline, files, people_store.stale_photos, people_store.replace_embedding)
    updated += _reembed(
        sessions, pipeline, stranger_files, strangers_store.stale_photos, strangers_store.replace_embedding
    )
    return updated


def _reembed(
    sessions: sessionmaker[Session],
    pipeline: FacePipeline,
    files: PhotoFiles,
    stale_photos: Callable[..., list[tuple[int, str, dict[str, Any]]]],
    replace_embedding: Callable[..., None],
) -> int:
    name = pipeline.embedder.name
    with sessions.begin() as session:
        stale = stale_photos(session, embedder=name)
    if not stale:
        return 0
    log.info("embedding %d stored photos again with %s", len(stale), name)
    updated = 0
    for start in range(0, len(stale), BATCH):
        results = []
        for photo_id, stored_name, box in stale[start : start + BATCH]:
            try:
                image = pipeline.decode(files.path(stored_name).read_bytes())
            except (OSError, InvalidImageError) as error:
                log.error("photo %d (%s) cannot be embedded again: %s", photo_id, stored_name, error)
                continue
            face_box = Box(float(box["x"]), float(box["y"]), float(box["width"]), float(box["height"]))
            embedding = pipeline.embed_boxes(image, [face_box])[0]
            results.append((photo_id, embedding.astype("<f4").tobytes()))
        with sessions.begin() as session:
            for photo_id, embedding in results:
                replace_embedding(session, photo_id=photo_id, embedder=name, embedding=embedding)
        updated += len(results)
    return updated
