"""The refiner contract: any detector's face box -> the box and five points MTCNN would give.

Phone apps find faces with their platform's detector (Apple Vision, ML Kit), whose boxes sit
elsewhere on the face than MTCNN's: measured on lfw_dev, cropping dlib's HOG boxes instead of
MTCNN's cost FaceNet 15 points of known faces accepted. So neither the server nor an app crops a
detector's box directly: both first run MTCNN's O-Net (``building.networks.onet``, shipped with
every version as ``refiner.*``) on a patch cut around the box, and crop from its answer. Steps, in
pixels of the upright photo:

1. Square the box around its centre: side ``s = max(width, height)``; ``left = round(cx - s / 2)``,
   ``top = round(cy - s / 2)``, ``s = round(s)`` (whole pixels; ``round`` is half up).
2. Cut that square (black beyond the photo) and resize it to 48 x 48 RGB, bilinear
   (area-averaging when shrinking): the refiner's ``patch``, 0-255.
3. The refiner answers ``face_probability``, ``box_offsets`` ``(dx1, dy1, dx2, dy2)`` and
   ``landmarks`` ``(x0..x4, y0..y4)``, all fractions of ``s``.
4. Refined box: ``x1 = left + dx1 * s``, ``y1 = top + dy1 * s``, ``x2 = left + s + dx2 * s``,
   ``y2 = top + s + dy2 * s``. Point ``k``: ``(left + x_k * s, top + y_k * s)``.

One pass is enough: on lfw_dev a second pass changed the figures by under half a point. The server
refines MTCNN's own boxes the same way, so enrolment and phones see the same kind of face.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceforge.core.faces import Box, DetectedFace, Landmarks
from faceforge.serving.vision.crop import crop_face, crop_square

# The refiner's input side in pixels (O-Net's, ``building.networks.onet``).
PATCH_SIZE = 48
FloatArray = npt.NDArray[np.float32]
# (N, 48, 48, 3) uint8 patches -> face probability (N,), box offsets (N, 4), landmarks (N, 10)
PatchDescriber = Callable[[npt.NDArray[np.uint8]], tuple[FloatArray, FloatArray, FloatArray]]


@dataclass(frozen=True, slots=True)
class RefinedFace:
    box: Box
    landmarks: Landmarks
    face_probability: float


def refiner_patch(picture: Image.Image, box: Box) -> tuple[npt.NDArray[np.uint8], tuple[int, int, int]]:
    """Steps 1-2: the ``(48, 48, 3)`` patch and the square it was cut from, ``(left, top, side)``."""
    left, top, right, _ = crop_square(box, margin=0.0)
    return crop_face(picture, box, margin=0.0, size=PATCH_SIZE), (left, top, right - left)


def refine_faces(picture: Image.Image, boxes: list[Box], describe: PatchDescriber) -> list[RefinedFace]:
    """Steps 1-4 for every box of one photo (one refiner call for all of them)."""
    if not boxes:
        return []
    cut = [refiner_patch(picture, box) for box in boxes]
    probability, offsets, points = describe(np.stack([patch for patch, _ in cut]))
    refined = []
    for (_, (left, top, side)), p, d, k in zip(cut, probability, offsets, points, strict=True):
        x1, y1 = left + float(d[0]) * side, top + float(d[1]) * side
        x2, y2 = left + side + float(d[2]) * side, top + side + float(d[3]) * side
        landmarks = tuple((left + float(k[i]) * side, top + float(k[i + 5]) * side) for i in range(5))
        refined.append(RefinedFace(Box(x1, y1, x2 - x1, y2 - y1), Landmarks(landmarks), float(p)))
    return refined


def as_detection(face: RefinedFace, score: float) -> DetectedFace:
    return DetectedFace(box=face.box, score=score, landmarks=face.landmarks)


def refine_contract() -> dict[str, object]:
    """The refiner contract as data, for model manifests (what an app does with a detector's box)."""
    return {
        "input": "any face detector's box (x, y, width, height) in pixels of the upright photo",
        "square": "m = max(width, height), not rounded; left = round(cx - m/2), top = round(cy - m/2), "
        "s = round(m); round(v) = floor(v + 0.5) (half up), in float64",
        "patch": {
            "size": [PATCH_SIZE, PATCH_SIZE],
            "colour": "RGB",
            "pixel_range": [0, 255],
            # As the crop contract's: a plain bilinear sample (no averaging) moved a tester's refined
            # box by 1.4 px and missed the contract vectors' patch checksum.
            "resize": "bilinear, area-averaging when shrinking (Pillow's resize: the filter widens "
            "with the reduction)",
            "outside_photo": "black (0, 0, 0)",
        },
        "outside_photo": "black (0, 0, 0)",
        "resize": "bilinear, area-averaging when shrinking",
        "outputs": {
            "face_probability": "probability that the patch holds a face",
            "box_offsets": "(dx1, dy1, dx2, dy2), fractions of s",
            "landmarks": "(x0..x4, y0..y4), fractions of s from the square's top-left corner",
        },
        "refined_box": "x1 = left + dx1*s, y1 = top + dy1*s, x2 = left + s + dx2*s, y2 = top + s + dy2*s",
        "refined_points": "(left + x_k*s, top + y_k*s): left eye, right eye, nose, left mouth, right mouth",
        "then": "crop the refined box (crop contract) and align the refined points (chip contract)",
    }
