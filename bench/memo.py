"""A pipeline that analyses each photo once per run, for benchmarks that evaluate many variants."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from faceforge.core.config import Settings
from faceforge.core.faces import PhotoFaces
from faceforge.serving.vision.pipeline import FacePipeline, PhotoError


class MemoPipeline(FacePipeline):
    """The service's pipeline with its results memoised per photo (its resolved path, so a symlink
    is the photo it points at) and single-face mode, so every variant of a benchmark sees the same
    faces and pays for them once."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._memo: dict[tuple[Path | bytes, bool], PhotoFaces | PhotoError] = {}

    def analyze_many(
        self, photos: Sequence[Path | bytes], *, single_face: bool, workers: int | None = None
    ) -> list[PhotoFaces | PhotoError]:
        keys = [photo.resolve() if isinstance(photo, Path) else photo for photo in photos]  # links too
        missing = list(dict.fromkeys(key for key in keys if (key, single_face) not in self._memo))
        for key, result in zip(
            missing, super().analyze_many(missing, single_face=single_face, workers=workers), strict=True
        ):
            self._memo[(key, single_face)] = result
        return [self._variant(self._memo[(key, single_face)]) for key in keys]

    def _variant(self, result: PhotoFaces | PhotoError) -> PhotoFaces | PhotoError:
        """What a memoised result is handed out as (itself; subclasses may transform a copy)."""
        return result
