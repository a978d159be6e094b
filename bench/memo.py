"""A pipeline that analyses each photo once per run, for benchmarks that evaluate many variants."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from faceforge.config import Settings
from faceforge.domain.faces import PhotoFaces
from faceforge.vision.pipeline import FacePipeline, PhotoError


class MemoPipeline(FacePipeline):
    """The service's pipeline with its results memoised per photo (and single-face mode), so every
    variant of a benchmark sees the same faces and pays for them once."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._memo: dict[tuple[Path | bytes, bool], PhotoFaces | PhotoError] = {}

    def analyze_many(
        self, photos: Sequence[Path | bytes], *, single_face: bool, workers: int | None = None
    ) -> list[PhotoFaces | PhotoError]:
        missing = list(dict.fromkeys(photo for photo in photos if (photo, single_face) not in self._memo))
        for photo, result in zip(
            missing, super().analyze_many(missing, single_face=single_face, workers=workers), strict=True
        ):
            self._memo[(photo, single_face)] = result
        return [self._variant(self._memo[(photo, single_face)]) for photo in photos]

    def _variant(self, result: PhotoFaces | PhotoError) -> PhotoFaces | PhotoError:
        """What a memoised result is handed out as (itself; subclasses may transform a copy)."""
        return result
