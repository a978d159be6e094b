"""Aligned face chips for dlib's descriptor, from the five points MTCNN (or a phone's detector) gives.

dlib's descriptor was trained on chips that ``dlib.get_face_chip(image, shape, 150, padding=0.25)``
cuts from its own 5-point shape predictor. We reproduce those chips from MTCNN's five points (eye
centres, nose tip, mouth corners) with one similarity transform (rotation, uniform scale, shift)
that sends the points as close as possible (least squares) to ``CHIP_TEMPLATE``: where MTCNN's
points fall, on average, in dlib's own chips. The template was measured on 372 lfw_dev faces
(dlib's HOG detector and 5-point predictor cut the chip, MTCNN then found the points in it);
per-point standard deviations were 1.7-2.3 px for the eyes and 4-5.5 px for nose and mouth.

The chip is sampled bilinearly; when one chip pixel spans four photo pixels or more (the transform's
scale ``s`` is 1/4 or less: a large face) the photo is first reduced by the whole factor
``floor(0.5 / s)`` with box averaging, so large photos do not alias.

Points that determine no usable transform (coincident, not finite, or so spread that the whole photo
would shrink below one chip pixel: a refiner's answer on a blank patch) are replaced by the template's
points placed in the face's box, as if the face were upright and centred in it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceforge.core.faces import Box, Landmarks

CHIP_SIZE = 150
# (x, y) in a 150 x 150 chip: image-left eye, image-right eye, nose tip, left and right mouth corner.
CHIP_TEMPLATE = np.array(
    [[47.0, 44.8], [102.3, 44.9], [73.8, 77.8], [50.5, 104.6], [98.2, 104.7]], dtype=np.float64
)


def similarity_to_template(points: npt.ArrayLike, size: int = CHIP_SIZE) -> npt.NDArray[np.float64]:
    """The 2 x 3 matrix of the similarity transform (no reflection) that maps the five ``points``
    (pixels of the photo) closest, in least squares, to ``CHIP_TEMPLATE`` scaled to ``size``."""
    source = np.asarray(points, dtype=np.float64).reshape(5, 2)
    if not np.isfinite(source).all():
        raise ValueError("the five points are not finite")
    target = CHIP_TEMPLATE * (size / CHIP_SIZE)
    source_mean, target_mean = source.mean(0), target.mean(0)
    s, t = source - source_mean, target - target_mean
    # A similarity x -> a*x - b*y, b*x + a*y (plus shift) is linear in (a, b): solve in closed form.
    norm = float((s**2).sum())
    if norm <= 0.0:
        raise ValueError("the five points coincide")
    a = float((s * t).sum()) / norm
    b = float((s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]).sum()) / norm
    if a == 0.0 and b == 0.0:
        raise ValueError("the five points determine no rotation or scale")
    rotation_scale = np.array([[a, -b], [b, a]])
    shift = target_mean - rotation_scale @ source_mean
    return np.hstack([rotation_scale, shift[:, None]])


def template_in_box(box: Box) -> list[tuple[float, float]]:
    """``CHIP_TEMPLATE``'s five points placed in ``box`` (photo pixels; at least 1 px a side)."""
    width, height = max(box.width, 1.0), max(box.height, 1.0)
    return [(box.x + x * width / CHIP_SIZE, box.y + y * height / CHIP_SIZE) for x, y in CHIP_TEMPLATE]


def _transform(picture: Image.Image, landmarks: Landmarks, box: Box, size: int) -> npt.NDArray[np.float64]:
    try:
        forward = similarity_to_template(landmarks.points, size)
    except ValueError:
        return similarity_to_template(template_in_box(box), size)
    scale = float(np.hypot(forward[0, 0], forward[1, 0]))
    if scale * max(picture.size) < 1.0:  # the whole photo would fit in one chip pixel
        return similarity_to_template(template_in_box(box), size)
    return forward


def chip_reduction(size: tuple[int, int], forward: npt.NDArray[np.float64]) -> int:
    """The whole factor a photo of ``size`` (width, height) is reduced by (box averaging) before the
    chip is sampled from it: ``floor(0.5 / s)`` for the transform's scale ``s`` (chip pixels per
    photo pixel; ``forward``: photo -> chip), more than 1 once ``s`` is 1/4 or less."""
    scale = float(np.hypot(forward[0, 0], forward[1, 0]))
    return min(max(1, int(0.5 / scale)), *size) if scale < 0.5 else 1


def chip_transform(
    picture: Image.Image, landmarks: Landmarks, box: Box, size: int = CHIP_SIZE
) -> npt.NDArray[np.float64]:
    """The 2 x 3 map from photo to chip that ``align_face`` samples by (degenerate points replaced)."""
    return _transform(picture, landmarks, box, size)


def align_face(
    picture: Image.Image, landmarks: Landmarks, box: Box, size: int = CHIP_SIZE
) -> npt.NDArray[np.uint8]:
    """The aligned ``(size, size, 3)`` uint8 RGB chip of the face whose five points are ``landmarks``
    and whose box is ``box`` (used only when the points are degenerate, see above)."""
    forward = _transform(picture, landmarks, box, size)
    reduction = chip_reduction(picture.size, forward)
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
        "sampling": "bilinear at pixel centres; when the transform's scale s (chip pixels per photo pixel) "
        "is 1/4 or less, the photo is first reduced by the whole factor floor(0.5 / s) with box averaging",
        "degenerate_points": "points that are coincident, not finite, or map the whole photo below one "
        "chip pixel are replaced by the template placed in the refined box (x + tx * w / 150, "
        "y + ty * h / 150)",
        "outside_photo": "black (0, 0, 0)",
        "colour": "RGB",
        "pixel_range": [0, 255],
    }
