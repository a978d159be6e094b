"""dlib's face descriptor network (``dlib_face_recognition_resnet_model_v1``) as our own PyTorch module.

A 29-convolution ResNet trained by Davis King with a metric loss (pairs of the same person closer
than 0.6 in Euclidean distance). Its layers, in forward order, as dlib defines them:

- stem: 7x7 convolution (32 filters, stride 2, no padding), affine (the folded BatchNorm), ReLU,
  3x3 max pool (stride 2, no padding);
- residual blocks of two 3x3 convolutions, each followed by an affine, ReLU between them, the
  block's input added back and ReLU after the sum: 3 blocks of 32 filters; then stages of 64 (4
  blocks), 128 (3), 256 (3) and 256 (1), each opened by a downsampling block;
- a downsampling block's first convolution has stride 2 and no padding, and its input reaches the
  sum through a 2x2 average pool (stride 2). dlib adds tensors of different shapes by treating
  what one lacks as zeros: the pooled input has fewer channels than the block (zeros above them),
  and at the 8 -> 3 and 4 -> 1 steps the pooled map is one or more pixels larger (the block's
  output sits in its top-left corner);
- a global average pool and a 256 -> 128 linear map without bias.

Input: ``(N, 3, 150, 150)`` float32, RGB, ``(pixel - DLIB_RGB_MEAN) / 256``: a face chip aligned
as ``dlib.get_face_chip`` makes it (see ``serving.vision.align``). Output: ``(N, 128)``, not normalised
(dlib's descriptors have norms near 1 but are compared by Euclidean distance as they are).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from faceforge.core.embedding_space import DLIB_DIMENSION

EMBEDDING_SIZE = DLIB_DIMENSION
INPUT_SIZE = 150
# (filters, blocks) per stage; every stage but the first opens with a downsampling block.
STAGES = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))


class Affine(nn.Module):
    """Per-channel ``gamma * x + beta``: dlib's inference-time BatchNorm."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[None, :, None, None] + self.beta[None, :, None, None]


def _conv_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class ResidualBlock(nn.Module):
    """Two convolutions and the shortcut, summed as dlib sums tensors of different shapes: each is
    extended with zeros (channels after its own, rows below, columns to the right) to the larger
    of the two shapes. The input size is fixed (150 px chips), so the extensions are computed once
    here: converters (Core ML, TFLite) then see constant paddings, not shape arithmetic."""

    def __init__(self, in_channels: int, filters: int, *, downsample: bool, input_size: int) -> None:
        super().__init__()
        stride, padding = (2, 0) if downsample else (1, 1)
        self.conv1 = nn.Conv2d(in_channels, filters, 3, stride=stride, padding=padding, bias=True)
        self.affine1 = Affine(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, stride=1, padding=1, bias=True)
        self.affine2 = Affine(filters)
        self.downsample = downsample
        residual = _conv_size(input_size, 3, stride, padding)
        shortcut = input_size // 2 if downsample else input_size
        self.output_size = max(residual, shortcut)
        grow_residual, grow_shortcut = self.output_size - residual, self.output_size - shortcut
        channels = max(filters, in_channels)
        self.residual_pad = (0, grow_residual, 0, grow_residual, 0, channels - filters)
        self.shortcut_pad = (0, grow_shortcut, 0, grow_shortcut, 0, channels - in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(torch.relu(self.affine1(self.conv1(x)))))
        shortcut = nn.functional.avg_pool2d(x, 2, stride=2) if self.downsample else x
        if any(self.residual_pad):
            y = nn.functional.pad(y, self.residual_pad)
        if any(self.shortcut_pad):
            shortcut = nn.functional.pad(shortcut, self.shortcut_pad)
        return torch.relu(y + shortcut)


class DlibFaceResNet(nn.Module):
    """Normalised ``(N, 3, 150, 150)`` chips -> ``(N, 128)`` dlib face descriptors."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, stride=2, padding=0, bias=True)
        self.stem_affine = Affine(32)
        blocks: list[ResidualBlock] = []
        channels = 32
        size = _conv_size(_conv_size(INPUT_SIZE, 7, 2, 0), 3, 2, 0)  # after the stem and its pool
        for stage, (filters, count) in enumerate(STAGES):
            for index in range(count):
                downsample = stage > 0 and index == 0
                block = ResidualBlock(channels, filters, downsample=downsample, input_size=size)
                blocks.append(block)
                channels, size = filters, block.output_size
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(channels, EMBEDDING_SIZE, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_affine(self.stem(x)))
        x = nn.functional.max_pool2d(x, 3, stride=2)
        for block in self.blocks:
            x = block(x)
        embedding: torch.Tensor = self.fc(x.mean(dim=(2, 3)))
        return embedding

    def convolutions(self) -> Iterator[tuple[nn.Conv2d, Affine]]:
        """Every convolution with the affine after it, in dlib's serialization (forward) order."""
        yield self.stem, self.stem_affine
        for block in self.blocks:
            assert isinstance(block, ResidualBlock)
            yield block.conv1, block.affine1
            yield block.conv2, block.affine2
