"""The embedding network: a face crop and an aligned chip in, one fused unit vector out.

Two descriptors of the same face, whose errors are partly independent (measured on lfw_dev):

- FaceNet (Inception-ResNet-v1, CASIA-WebFace) on the crop contract's 160 x 160 ``face`` crop,
  pixels normalised as ``(v - 127.5) / 128``, averaged with its mirror image, L2-normalised (512-d);
- dlib's ResNet descriptor on the 150 x 150 aligned ``chip`` (``serving.vision.align``), pixels normalised as
  ``(v - mean_c) / 256`` with dlib's per-channel RGB means, L2-normalised (128-d).

The embedding is ``[sqrt(1 - w) * facenet, sqrt(w) * dlib]`` with dlib weight ``w``
(``DLIB_WEIGHT``): a unit vector whose cosine with another is ``(1 - w) cos_facenet + w cos_dlib``.

The same module serves the server (exported once to ONNX) and every on-device model:
``channels_last`` takes NHWC inputs (TFLite); ``normalise_pixels=False`` leaves the pixel
normalisation to the caller (Core ML's image preprocessing); ``stack_flip`` runs FaceNet once on the
crop and its mirror stacked along the batch, so converters store each weight once (tracing two calls
made coremltools store every weight twice).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from faceforge.building.weights.dlib_serialized import PIXEL_SCALE as DLIB_PIXEL_SCALE
from faceforge.core.embedding_space import DLIB_WEIGHT
from faceforge.serving.vision.crop import PIXEL_MEAN, PIXEL_SCALE


class FaceEmbeddingNet(nn.Module):
    """``face`` ``(N, 3, 160, 160)`` and ``chip`` ``(N, 3, 150, 150)`` float32 RGB (0-255 unless
    ``normalise_pixels=False``) -> ``(N, 640)`` float32 unit vectors."""

    dlib_means: torch.Tensor

    def __init__(
        self,
        facenet: nn.Module,
        dlib: nn.Module,
        dlib_means: tuple[float, float, float],
        *,
        dlib_weight: float = DLIB_WEIGHT,
        channels_last: bool = False,
        normalise_pixels: bool = True,
        stack_flip: bool = False,
    ) -> None:
        super().__init__()
        self.facenet = facenet
        self.dlib = dlib
        self.register_buffer("dlib_means", torch.tensor(dlib_means, dtype=torch.float32).view(1, 3, 1, 1))
        self.facenet_gain = math.sqrt(1.0 - dlib_weight)
        self.dlib_gain = math.sqrt(dlib_weight)
        self.channels_last = channels_last
        self.normalise_pixels = normalise_pixels
        self.stack_flip = stack_flip

    def forward(self, face: torch.Tensor, chip: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            face, chip = face.permute(0, 3, 1, 2), chip.permute(0, 3, 1, 2)
        if self.normalise_pixels:
            face = (face - PIXEL_MEAN) / PIXEL_SCALE
            chip = (chip - self.dlib_means) / DLIB_PIXEL_SCALE
        if self.stack_flip:
            upright, mirrored = self.facenet(torch.cat([face, torch.flip(face, dims=[3])], 0)).chunk(2, dim=0)
            facenet = upright + mirrored
        else:
            facenet = self.facenet(face) + self.facenet(torch.flip(face, dims=[3]))
        facenet = nn.functional.normalize(facenet, p=2.0, dim=1, eps=1e-10)
        dlib = nn.functional.normalize(self.dlib(chip), p=2.0, dim=1, eps=1e-10)
        return torch.cat([self.facenet_gain * facenet, self.dlib_gain * dlib], dim=1)
