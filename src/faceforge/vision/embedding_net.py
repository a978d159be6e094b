"""The full embedding network: 0-255 RGB face crops in, L2-normalised embeddings out.

It wraps the backbone with the crop contract's pixel normalisation and flip averaging, so the same
module serves the server (through ONNX Runtime) and every exported on-device model.
"""

from __future__ import annotations

import torch
from torch import nn

from faceforge.vision.crop import PIXEL_MEAN, PIXEL_SCALE


class FaceEmbeddingNet(nn.Module):
    """``(N, 3, 160, 160)`` float32 RGB in ``[0, 255]`` -> ``(N, D)`` float32 unit vectors."""

    def __init__(self, backbone: nn.Module, *, flip_average: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        self.flip_average = flip_average

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels - PIXEL_MEAN) / PIXEL_SCALE
        features = self.backbone(x)
        if self.flip_average:
            features = features + self.backbone(torch.flip(x, dims=[3]))
        return nn.functional.normalize(features, p=2.0, dim=1, eps=1e-10)
