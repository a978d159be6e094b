"""The embedding network as the on-device converters want it.

Same maths as ``FaceEmbeddingNet`` (the server's network), arranged for conversion:

- flip averaging runs the backbone once on ``[x, flip(x)]`` stacked along the batch, so converters
  see each weight once (tracing ``backbone(x) + backbone(flip(x))`` stores every weight twice);
- ``channels_last`` takes NHWC input, as TFLite apps feed it;
- ``normalise_pixels=False`` leaves ``(v - 127.5) / 128`` to the caller, e.g. Core ML's image
  preprocessing, which applies it as a fixed scale and bias.
"""

from __future__ import annotations

import torch
from torch import nn

from faceforge.vision.crop import PIXEL_MEAN, PIXEL_SCALE


class DeviceEmbeddingNet(nn.Module):
    def __init__(self, backbone: nn.Module, *, channels_last: bool, normalise_pixels: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.channels_last = channels_last
        self.normalise_pixels = normalise_pixels

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        x = face.permute(0, 3, 1, 2) if self.channels_last else face
        if self.normalise_pixels:
            x = (x - PIXEL_MEAN) / PIXEL_SCALE
        upright, mirrored = self.backbone(torch.cat([x, torch.flip(x, dims=[3])], 0)).chunk(2, dim=0)
        features = upright + mirrored
        return nn.functional.normalize(features, p=2.0, dim=1, eps=1e-10)


class DeviceClassifierNet(nn.Module):
    """Embedding network followed by the version's head: ``softmax(E @ W + b)``, unknown last."""

    def __init__(self, embedding: DeviceEmbeddingNet, weights: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.embedding = embedding
        self.head = nn.Linear(weights.shape[0], weights.shape[1])
        with torch.no_grad():
            self.head.weight.copy_(weights.T)
            self.head.bias.copy_(bias)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.embedding(face)), dim=1)
