"""The two image inputs of every exported model, as each format describes them.

- ``face``: the crop contract's 160 x 160 RGB crop of the refined box (``serving.vision.crop``), for FaceNet;
- ``chip``: the 150 x 150 RGB chip aligned from the refined five points (``serving.vision.align``), for
  dlib's descriptor.

ONNX and TFLite take both as float32 0-255 and normalise inside the network. Core ML takes them as
images and normalises with its image preprocessing, ``value * scale + bias`` per channel, as below.
"""

from __future__ import annotations

from dataclasses import dataclass

from faceforge.building.weights.dlib_serialized import DLIB_RGB_MEANS
from faceforge.building.weights.dlib_serialized import PIXEL_SCALE as DLIB_PIXEL_SCALE
from faceforge.serving.vision.align import CHIP_SIZE
from faceforge.serving.vision.crop import CROP_SIZE, PIXEL_MEAN, PIXEL_SCALE


@dataclass(frozen=True, slots=True)
class ImageInput:
    name: str
    size: int
    scale: float  # Core ML preprocessing: value * scale + bias
    bias: tuple[float, float, float]  # red, green, blue
    description: str

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "size": [self.size, self.size],
            "colour": "RGB",
            "range": [0, 255],
            "description": self.description,
        }


FACE = ImageInput(
    "face",
    CROP_SIZE,
    1.0 / PIXEL_SCALE,
    (-PIXEL_MEAN / PIXEL_SCALE,) * 3,
    "160x160 crop of the refined box by the crop contract (FaceNet)",
)
CHIP = ImageInput(
    "chip",
    CHIP_SIZE,
    1.0 / DLIB_PIXEL_SCALE,
    (
        -DLIB_RGB_MEANS[0] / DLIB_PIXEL_SCALE,
        -DLIB_RGB_MEANS[1] / DLIB_PIXEL_SCALE,
        -DLIB_RGB_MEANS[2] / DLIB_PIXEL_SCALE,
    ),
    "150x150 chip aligned from the refined five points onto the chip template (dlib)",
)
MODEL_INPUTS = (FACE, CHIP)
