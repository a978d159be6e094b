"""The crop contract: how a refined face box becomes FaceNet's input (the models' ``face`` input).

This is also an input contract of every exported model, so a phone app reproduces it from its own
detector (Apple Vision, ML Kit): the detector's box goes through the refiner first
(``serving.vision.refine``; the whole sequence is in ``serving.vision.face_input``), then:

1. Take the refined box ``(x, y, width, height)`` in pixels of the upright photo.
2. Make it square around the box centre with side ``max(width, height) * (1 + 2 * CROP_MARGIN)``,
   i.e. a margin of ``CROP_MARGIN`` (see below) of the longer side on each edge.
3. Cut that square from the photo; parts beyond the photo's border are black (zero) pixels.
4. Resize it to ``CROP_SIZE`` x ``CROP_SIZE`` RGB with bilinear filtering (area-averaging when shrinking).
5. The network normalises pixels itself: ``(value - PIXEL_MEAN) / PIXEL_SCALE`` per channel, so
   exported models take plain 0-255 RGB (Core ML: image input with that scale and bias).
6. The embedding is the L2-normalised average of the embeddings of the crop and of its horizontal
   mirror (test-time flip averaging), computed inside the network.

The numbers were chosen by measurement on the dev photos (see README, "Crop contract").
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceforge.core.faces import Box

CROP_SIZE = 160
CROP_MARGIN = 0.05
PIXEL_MEAN = 127.5
PIXEL_SCALE = 128.0


def crop_square(box: Box, *, margin: float = CROP_MARGIN) -> tuple[int, int, int, int]:
    """Return the contract's square ``(left, top, right, bottom)`` in whole pixels (may leave the photo)."""
    side = max(box.width, box.height) * (1.0 + 2.0 * margin)
    centre_x = box.x + box.width / 2.0
    centre_y = box.y + box.height / 2.0
    left = math.floor(centre_x - side / 2.0 + 0.5)
    top = math.floor(centre_y - side / 2.0 + 0.5)
    whole = max(1, math.floor(side + 0.5))
    return left, top, left + whole, top + whole


def crop_face(
    picture: Image.Image, box: Box, *, margin: float = CROP_MARGIN, size: int = CROP_SIZE
) -> npt.NDArray[np.uint8]:
    """Cut the contract's square around ``box`` from an RGB ``picture``: ``(size, size, 3)`` uint8 RGB."""
    region = picture.crop(crop_square(box, margin=margin))  # Pillow fills outside the photo with black
    return np.asarray(region.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def crop_contract() -> dict[str, object]:
    """The crop contract as data, for model manifests (what an app must do before calling a model)."""
    return {
        "input": "face crop",
        "box": "the refiner's box (x, y, width, height) in pixels of the upright (EXIF-rotated) photo",
        "square_side": f"max(width, height) * (1 + 2 * {CROP_MARGIN})",
        "margin": CROP_MARGIN,
        "centre": "box centre",
        "whole_pixels": "left = floor(cx - side/2 + 0.5), top = floor(cy - side/2 + 0.5) with side not "
        "rounded, then side = max(1, floor(side + 0.5)); in float64",
        "outside_photo": "black (0, 0, 0)",
        "size": [CROP_SIZE, CROP_SIZE],
        "resize": "bilinear, area-averaging when shrinking",
        "colour": "RGB",
        "pixel_range": [0, 255],
        "normalisation": f"(value - {PIXEL_MEAN}) / {PIXEL_SCALE}, inside the network",
        "flip_average": True,
    }
