"""Faces as an app finds them: another detector's box, cropped by the documented crop contract.

The server crops MTCNN's boxes; a phone app crops the boxes of its own detector (Apple Vision, ML
Kit), and the on-device model sees those crops. ``faceforge eval --app-detector`` measures probes
and strangers cropped that way (enrolment stays server-side), with detectors of other families that
registry packages ship (OpenCV's Haar cascade was the candidate of a third family, but OpenCV 5,
which the lock pins, no longer ships ``CascadeClassifier`` or its XML files):

- ``dlib``: dlib's HOG detector (``dlib-bin``), a box that sits lower and tighter than MTCNN's;
- ``jitter``: MTCNN's box moved by up to 10 % of its size and scaled by 0.9-1.1 (a fixed seed).

Only the largest face of each photo is used, as ``identify`` reports the largest first.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from faceforge.domain.errors import DatasetError
from faceforge.domain.faces import Box

if TYPE_CHECKING:  # the CLI imports the detector names without the vision stack
    from faceforge.vision.pipeline import FacePipeline

JITTER = 0.10
JITTER_SEED = 0


class AppDetector(StrEnum):
    MTCNN = "mtcnn"
    DLIB = "dlib"
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
    return _mtcnn_finder(pipeline, jitter=detector is AppDetector.JITTER)


def app_embeddings(
    pipeline: FacePipeline, finder: BoxFinder, photos: list[Any]
) -> list[npt.NDArray[np.float32] | None]:
    """The largest face of each photo as the app would embed it (``None``: no face found)."""
    from PIL import Image

    from faceforge.vision.crop import crop_face

    embeddings: list[npt.NDArray[np.float32] | None] = []
    for photo in photos:
        image = pipeline.decode(photo.read_bytes())
        box = finder(image)
        if box is None:
            embeddings.append(None)
            continue
        crop = crop_face(Image.fromarray(image), box)
        embeddings.append(pipeline.embedder.embed(crop[None])[0])
    return embeddings
