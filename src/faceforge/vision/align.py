"""Aligned face chips for dlib's descriptor, from the five points MTCNN (or a phone's detector) gives.

dlib's descriptor was trained on chips that ``dlib.get_face_chip(image, shape, 150, padding=0.25)``
cuts from its own 5-point shape predictor. We reproduce those chips from MTCNN's five points (eye
centres, nose tip, mouth corners) with one similarity transform (rotation, uniform scale, shift)
that sends the points as close as possible (least squares) to ``CHIP_TEMPLATE``: where MTCNN's
points fall, on average, in dlib's own chips. The template was measured on 372 lfw_dev faces
(dlib's HOG detector and 5-point predictor cut the chip, MTCNN then found the points in it);
per-point standard deviations were 1.7-2.3 px for the eyes and 4-5.5 px for nose and mouth.

The chip is sampled bilinearly; when the face is more than twice the chip's size the photo is first
reduced by a whole factor with box averaging, so large photos do not alias.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceforge.domain.faces import Landmarks

CHIP_SIZE = 150
# (x, y) in a 150 x 150 chip: image-left eye, image-right eye, nose tip, left and right mouth corner.
CHIP_TEMPLATE = np.array(
    [[47.0, 44.8], [102.3, 44.9], [73.8, 77.8], [50.5, 104.6], [98.2, 104.7]], dtype=np.float64
)


def similarity_to_template(points: npt.ArrayLike, size: int = CHIP_SIZE) -> npt.NDArray[np.float64]:
    """The 2 x 3 matrix of the similarity transform (no reflection) that maps the five ``points``
    (pixels of the photo) closest, in least squares, to ``CHIP_TEMPLATE`` scaled to ``size``."""
    source = np.asarray(points, dtype=np.float64).reshape(5, 2)
    target = CHIP_TEMPLATE * (size / CHIP_SIZE)
    source_mean, target_mean = source.mean(0), target.mean(0)
    s, t = source - source_mean, target - target_mean
    # A similarity x -> a*x - b*y, b*x + a*y (plus shift) is linear in (a, b): solve in closed form.
    norm = float((s**2).sum())
    if norm <= 0.0:
        raise ValueError("the five points coincide")
    a = float((s * t).sum()) / norm
    b = float((s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]).sum()) / norm
    rotation_scale = np.array([[a, -b], [b, a]])
    shift = target_mean - rotation_scale @ source_mean
    return np.hstack([rotation_scale, shift[:, None]])


def align_face(picture: Image.Image, landmarks: Landmarks, size: int = CHIP_SIZE) -> npt.NDArray[np.uint8]:
    """The aligned ``(size, size, 3)`` uint8 RGB chip of the face whose five points are ``landmarks``."""
    forward = similarity_to_template(landmarks.points, size)
    scale = float(np.hypot(forward[0, 0], forward[1, 0]))  # chip pixels per photo pixel
    reduction = max(1, int(0.5 / scale)) if scale < 0.5 else 1
    source = picture
    if reduction > 1:
        source = picture.reduce(reduction)
        forward = forward @ np.diag([reduction, reduction, 1.0])
    # Pillow wants the inverse map: for each chip pixel, where to sample the photo. Both work on
    # pixel centres at integer + 0.5, so the affine maps carry over as they are.
    inverse = np.linalg.inv(np.vstack([forward, [0.0, 0.0, 1.0]]))[:2]
    chip = source.transform(
        (size, size), Image.Transform.AFFINE, tuple(inverse.ravel()), Image.Resampling.BILINEAR
    )
    return np.asarray(chip, dtype=np.uint8)


def chip_contract() -> dict[str, object]:
    """The chip contract as data, for model manifests (how an app aligns the ``chip`` input)."""
    return {
        "input": "the refiner's five points (image-left eye, image-right eye, nose tip, image-left and "
        "image-right mouth corner), pixels of the upright photo",
        "transform": "the similarity (rotation, uniform scale, shift; no reflection) that maps the points "
        "closest to the template in least squares",
        "template": CHIP_TEMPLATE.tolist(),
        "size": [CHIP_SIZE, CHIP_SIZE],
        "sampling": "bilinear at pixel centres; when the face is over twice the chip's size, the photo is "
        "first reduced by a whole factor with box averaging",
        "outside_photo": "black (0, 0, 0)",
        "colour": "RGB",
        "pixel_range": [0, 255],
    }
