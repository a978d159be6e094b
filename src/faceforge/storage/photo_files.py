"""Enrolment photos on disk under names we choose (a UUID), never the client's file name."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from faceforge.core.atomic import write_atomically

log = logging.getLogger(__name__)


class PhotoFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, data: bytes, extension: str) -> str:
        name = f"{uuid.uuid4().hex}.{extension}"
        write_atomically(self.directory / name, lambda temp: _write(temp, data))
        return name

    def path(self, name: str) -> Path:
        return self.directory / Path(name).name

    def delete(self, names: list[str]) -> None:
        for name in names:
            try:
                self.path(name).unlink(missing_ok=True)
            except OSError:
                log.exception("could not delete photo file %s", name)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
