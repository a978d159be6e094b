"""Faces as an app finds them: another detector's box, through the documented app-side contract.

The server refines, crops and aligns MTCNN's boxes; a phone app does the same with the boxes of its
own detector (Apple Vision, ML Kit) and the shipped refiner (``serving.vision.face_input``), and the
on-device model sees those inputs. ``faceforge eval --app-detector`` measures probes and strangers
embedded that way (enrolment stays server-side), with detectors of other families that registry
packages ship:

- ``dlib``: dlib's HOG detector (``dlib-bin``), a box that sits lower and tighter than MTCNN's;
- ``blazeface``: MediaPipe's BlazeFace (``edge.blazeface``, also run by ``faceforge watch``), the
  single-shot mobile detector family of Android's ML Kit, a square box lower on the face than MTCNN's;
- ``jitter``: MTCNN's box moved by up to 10 % of its size and scaled by 0.9-1.1 (a fixed seed).

Only the largest face of each photo is used, as ``identify`` reports the largest first.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from faceforge.core.errors import DatasetError
from faceforge.core.faces import Box

if TYPE_CHECKING:  # the CLI imports the detector names without the vision stack
    from faceforge.serving.vision.pipeline import FacePipeline

JITTER = 0.10
JITTER_SEED = 0


class AppDetector(StrEnum):
    MTCNN = "mtcnn"
    DLIB = "dlib"
    BLAZEFACE = "blazeface"
    JITTER = "jitter"


BoxFinder = Callable[[npt.NDArray[np.uint8]], Box | None]


def _largest(boxes: list[Box]) -> Box | None:
    return max(boxes, key=lambda box: box.width * box.height) if boxes else None


def _dlib_finder() -> BoxFinder:
    try:
        import dlib
    except ImportError as error:
        raise DatasetError("--app-detector dlib needs dlib-bin (installed by `make install`)") from error
    detector = dlib.get_frontal_face_detector()

    def find(image: npt.NDArray[np.uint8]) -> Box | None:
        # One upsampling, as face_recognition does by default: LFW-sized faces are found.
        found = detector(image, 1)
        return _largest([Box(r.left(), r.top(), r.width(), r.height()) for r in found])

    return find


def _blazeface_finder() -> BoxFinder:
    from faceforge.edge.blazeface import BlazeFaceDetector

    detector = BlazeFaceDetector()

    def find(image: npt.NDArray[np.uint8]) -> Box | None:
        return _largest(detector.detect(image))

    return find


def _mtcnn_finder(pipeline: FacePipeline, *, jitter: bool) -> BoxFinder:
    random = np.random.default_rng(JITTER_SEED)

    def find(image: npt.NDArray[np.uint8]) -> Box | None:
        # The face identify would report first: the largest that clears the detection score.
        minimum = pipeline.detector_settings.min_score
        faces = [face for face in pipeline.detect(image) if face.score >= minimum]
        if not faces:
            return None
        box = faces[0].box
        if not jitter:
            return box
        dx, dy = random.uniform(-JITTER, JITTER, 2)
        scale = random.uniform(1 - JITTER, 1 + JITTER)
        width, height = box.width * scale, box.height * scale
        centre_x = box.x + box.width / 2 + dx * box.width
        centre_y = box.y + box.height / 2 + dy * box.height
        return Box(centre_x - width / 2, centre_y - height / 2, width, height)

    return find


def box_finder(detector: AppDetector, pipeline: FacePipeline) -> BoxFinder:
    if detector is AppDetector.DLIB:
        return _dlib_finder()
    if detector is AppDetector.BLAZEFACE:
        return _blazeface_finder()
    return _mtcnn_finder(pipeline, jitter=detector is AppDetector.JITTER)


def app_embeddings(
    pipeline: FacePipeline, finder: BoxFinder, photos: list[Any]
) -> list[npt.NDArray[np.float32] | None]:
    """The largest face of each photo as the app would embed it (``None``: no face found)."""
    embeddings: list[npt.NDArray[np.float32] | None] = []
    for photo in photos:
        image = pipeline.decode(photo.read_bytes())
        box = finder(image)
        if box is None:
            embeddings.append(None)
            continue
        embeddings.append(pipeline.embed_boxes(image, [box])[0])
    return embeddings
