"""What the embedder (and every exported model) takes for one face, from the detector's box.

This is the whole app-side contract, and the server follows it to the pixel:

1. **Refine** the detector's box with the refiner (``serving.vision.refine``): the box and five points
   MTCNN would give, whichever detector found the face.
2. **Crop** the refined box by the crop contract (``serving.vision.crop``): ``face``, 160 x 160 RGB.
3. **Align** the refined five points onto the chip template (``serving.vision.align``): ``chip``,
   150 x 150 RGB.

Both images are 0-255 RGB; the networks normalise pixels themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceforge.core.faces import Box
from faceforge.serving.vision.align import CHIP_SIZE, align_face
from faceforge.serving.vision.crop import CROP_SIZE, crop_face
from faceforge.serving.vision.refine import PatchDescriber, RefinedFace, refine_faces


@dataclass(frozen=True, slots=True)
class FaceInputs:
    """``crops`` ``(N, 160, 160, 3)`` and ``chips`` ``(N, 150, 150, 3)``, uint8 RGB, one row per face."""

    crops: npt.NDArray[np.uint8]
    chips: npt.NDArray[np.uint8]

    def __post_init__(self) -> None:
        if self.crops.ndim != 4 or self.crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"expected (N, {CROP_SIZE}, {CROP_SIZE}, 3) crops, got {self.crops.shape}")
        if self.chips.ndim != 4 or self.chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) chips, got {self.chips.shape}")
        if len(self.crops) != len(self.chips):
            raise ValueError(f"{len(self.crops)} crops but {len(self.chips)} chips")

    def __len__(self) -> int:
        return len(self.crops)

    def rows(self, start: int, stop: int) -> FaceInputs:
        return FaceInputs(self.crops[start:stop], self.chips[start:stop])


def empty_inputs() -> FaceInputs:
    return FaceInputs(
        np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8), np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
    )


def concatenate_inputs(parts: Sequence[FaceInputs]) -> FaceInputs:
    """The rows of ``parts`` in order, as one ``FaceInputs``."""
    parts = [part for part in parts if len(part)]
    if not parts:
        return empty_inputs()
    return FaceInputs(
        np.concatenate([part.crops for part in parts]), np.concatenate([part.chips for part in parts])
    )


def face_inputs(
    picture: Image.Image, boxes: list[Box], describe: PatchDescriber
) -> tuple[FaceInputs, list[RefinedFace]]:
    """Steps 1-3 for every box of one RGB ``picture``; also returns what the refiner answered."""
    if not boxes:
        return empty_inputs(), []
    refined = refine_faces(picture, boxes, describe)
    crops = np.stack([crop_face(picture, face.box) for face in refined])
    chips = np.stack([align_face(picture, face.landmarks, face.box) for face in refined])
    return FaceInputs(crops, chips), refined
