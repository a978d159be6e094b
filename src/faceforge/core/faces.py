"""Faces as the vision core reports them. Coordinates are pixels of the EXIF-rotated photo."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Box:
    """Axis-aligned box: top-left corner ``(x, y)`` and size, in pixels (floats, may be fractional)."""

    x: float
    y: float
    width: float
    height: float

    @property
    def area(self) -> float:
        return self.width * self.height


@dataclass(frozen=True, slots=True)
class Landmarks:
    """Five points, each ``(x, y)`` in pixels: left eye, right eye, nose tip, left and right mouth corner.

    "Left" is the subject's left as seen in the photo's left half (image-left), as MTCNN reports it.
    """

    points: tuple[tuple[float, float], ...]


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class RejectReason(StrEnum):
    """Why a photo (or one face in it) is not usable for enrolment."""

    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    FACE_TOO_SMALL = "face_too_small"
    LOW_DETECTION_SCORE = "low_detection_score"


@dataclass(frozen=True, slots=True)
class DetectedFace:
    box: Box
    score: float
    landmarks: Landmarks


@dataclass(slots=True)
class Face:
    """A detected face with its quality verdict and, when usable, its L2-normalised embedding."""

    detection: DetectedFace
    reasons: list[RejectReason] = field(default_factory=list)
    embedding: FloatArray | None = None

    @property
    def verdict(self) -> Verdict:
        return Verdict.REJECTED if self.reasons else Verdict.ACCEPTED


@dataclass(slots=True)
class PhotoFaces:
    """Every face found in one photo, largest first, and the photo-level verdict.

    ``reasons`` is empty when the photo is usable for enrolment (exactly one good face when a single
    face is required; at least one otherwise).
    """

    width: int
    height: int
    faces: list[Face]
    reasons: list[RejectReason]
    # Seconds each stage took when the photo was analysed alone: "detector" (decode, detect, judge,
    # the embedder's inputs) and "calculator" (the embedding), as CompreFace's status reports them.
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        return Verdict.REJECTED if self.reasons else Verdict.ACCEPTED
