"""FaceNet's Inception-ResNet-v1 as our own PyTorch module.

The architecture follows the published Inception-ResNet-v1 as trained by FaceNet on CASIA-WebFace
(512-d bottleneck). Every convolution carries a bias because the shipped graph has BatchNorm folded
into convolution biases. Each convolution unit remembers the TensorFlow scope its weights come from,
so the loader in ``faceforge.building.weights.facenet_weights`` can fill the module mechanically.

Input: ``(N, 3, 160, 160)`` float32, RGB, already normalised (see ``serving.vision.crop``).
Output: ``(N, 512)`` float32, the bottleneck (not yet L2-normalised; ``FaceEmbeddingNet`` does that).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from faceforge.core.embedding_space import FACENET_DIMENSION

EMBEDDING_SIZE = FACENET_DIMENSION
INPUT_SIZE = 160


class ConvUnit(nn.Module):
    """Convolution with bias, optionally followed by ReLU. ``same=True`` pads like TF's SAME at stride 1."""

    def __init__(
        self,
        scope: str,
        in_channels: int,
        out_channels: int,
        kernel: int | tuple[int, int],
        *,
        stride: int = 1,
        same: bool = True,
        relu: bool = True,
    ) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        padding = (kh // 2, kw // 2) if same else (0, 0)
        self.scope = scope
        self.conv = nn.Conv2d(in_channels, out_channels, (kh, kw), stride=stride, padding=padding, bias=True)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return torch.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    """Inception-ResNet block: parallel branches, concatenated, projected, scaled and added back."""

    def __init__(
        self, scope: str, branches: list[nn.Sequential], project: ConvUnit, scale: float, relu: bool
    ) -> None:
        super().__init__()
        self.scope = scope
        self.branches = nn.ModuleList(branches)
        self.project = project
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([branch(x) for branch in self.branches], dim=1)
        out = x + self.scale * self.project(mixed)
        return torch.relu(out) if self.relu else out


def _block35(scope: str) -> ResidualBlock:
    return ResidualBlock(
        scope,
        [
            nn.Sequential(ConvUnit(f"{scope}/Branch_0/Conv2d_1x1", 256, 32, 1)),
            nn.Sequential(
                ConvUnit(f"{scope}/Branch_1/Conv2d_0a_1x1", 256, 32, 1),
                ConvUnit(f"{scope}/Branch_1/Conv2d_0b_3x3", 32, 32, 3),
            ),
            nn.Sequential(
                ConvUnit(f"{scope}/Branch_2/Conv2d_0a_1x1", 256, 32, 1),
                ConvUnit(f"{scope}/Branch_2/Conv2d_0b_3x3", 32, 32, 3),
                ConvUnit(f"{scope}/Branch_2/Conv2d_0c_3x3", 32, 32, 3),
            ),
        ],
        ConvUnit(f"{scope}/Conv2d_1x1", 96, 256, 1, relu=False),
        scale=0.17,
        relu=True,
    )


def _block17(scope: str) -> ResidualBlock:
    return ResidualBlock(
        scope,
        [
            nn.Sequential(ConvUnit(f"{scope}/Branch_0/Conv2d_1x1", 896, 128, 1)),
            nn.Sequential(
                ConvUnit(f"{scope}/Branch_1/Conv2d_0a_1x1", 896, 128, 1),
                ConvUnit(f"{scope}/Branch_1/Conv2d_0b_1x7", 128, 128, (1, 7)),
                ConvUnit(f"{scope}/Branch_1/Conv2d_0c_7x1", 128, 128, (7, 1)),
            ),
        ],
        ConvUnit(f"{scope}/Conv2d_1x1", 256, 896, 1, relu=False),
        scale=0.10,
        relu=True,
    )


def _block8(scope: str, *, scale: float = 0.20, relu: bool = True) -> ResidualBlock:
    return ResidualBlock(
        scope,
        [
            nn.Sequential(ConvUnit(f"{scope}/Branch_0/Conv2d_1x1", 1792, 192, 1)),
            nn.Sequential(
                ConvUnit(f"{scope}/Branch_1/Conv2d_0a_1x1", 1792, 192, 1),
                ConvUnit(f"{scope}/Branch_1/Conv2d_0b_1x3", 192, 192, (1, 3)),
                ConvUnit(f"{scope}/Branch_1/Conv2d_0c_3x1", 192, 192, (3, 1)),
            ),
        ],
        ConvUnit(f"{scope}/Conv2d_1x1", 384, 1792, 1, relu=False),
        scale=scale,
        relu=relu,
    )


class Reduction(nn.Module):
    """Grid reduction: strided convolution branches and a max-pool branch, concatenated."""

    def __init__(self, branches: list[nn.Sequential]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([*(branch(x) for branch in self.branches), pooled], dim=1)


class InceptionResnetV1(nn.Module):
    """The FaceNet trunk and 512-d bottleneck (BatchNorm of the bottleneck folded into ``bottleneck``)."""

    ROOT = "InceptionResnetV1"

    def __init__(self) -> None:
        super().__init__()
        r = self.ROOT
        self.stem = nn.Sequential(
            ConvUnit(f"{r}/Conv2d_1a_3x3", 3, 32, 3, stride=2, same=False),
            ConvUnit(f"{r}/Conv2d_2a_3x3", 32, 32, 3, same=False),
            ConvUnit(f"{r}/Conv2d_2b_3x3", 32, 64, 3),
            nn.MaxPool2d(3, stride=2),
            ConvUnit(f"{r}/Conv2d_3b_1x1", 64, 80, 1, same=False),
            ConvUnit(f"{r}/Conv2d_4a_3x3", 80, 192, 3, same=False),
            ConvUnit(f"{r}/Conv2d_4b_3x3", 192, 256, 3, stride=2, same=False),
        )
        self.repeat = nn.Sequential(*(_block35(f"{r}/Repeat/block35_{i}") for i in range(1, 6)))
        m6 = f"{r}/Mixed_6a"
        self.mixed_6a = Reduction(
            [
                nn.Sequential(ConvUnit(f"{m6}/Branch_0/Conv2d_1a_3x3", 256, 384, 3, stride=2, same=False)),
                nn.Sequential(
                    ConvUnit(f"{m6}/Branch_1/Conv2d_0a_1x1", 256, 192, 1),
                    ConvUnit(f"{m6}/Branch_1/Conv2d_0b_3x3", 192, 192, 3),
                    ConvUnit(f"{m6}/Branch_1/Conv2d_1a_3x3", 192, 256, 3, stride=2, same=False),
                ),
            ]
        )
        self.repeat_1 = nn.Sequential(*(_block17(f"{r}/Repeat_1/block17_{i}") for i in range(1, 11)))
        m7 = f"{r}/Mixed_7a"
        self.mixed_7a = Reduction(
            [
                nn.Sequential(
                    ConvUnit(f"{m7}/Branch_0/Conv2d_0a_1x1", 896, 256, 1),
                    ConvUnit(f"{m7}/Branch_0/Conv2d_1a_3x3", 256, 384, 3, stride=2, same=False),
                ),
                nn.Sequential(
                    ConvUnit(f"{m7}/Branch_1/Conv2d_0a_1x1", 896, 256, 1),
                    ConvUnit(f"{m7}/Branch_1/Conv2d_1a_3x3", 256, 256, 3, stride=2, same=False),
                ),
                nn.Sequential(
                    ConvUnit(f"{m7}/Branch_2/Conv2d_0a_1x1", 896, 256, 1),
                    ConvUnit(f"{m7}/Branch_2/Conv2d_0b_3x3", 256, 256, 3),
                    ConvUnit(f"{m7}/Branch_2/Conv2d_1a_3x3", 256, 256, 3, stride=2, same=False),
                ),
            ]
        )
        self.repeat_2 = nn.Sequential(*(_block8(f"{r}/Repeat_2/block8_{i}") for i in range(1, 6)))
        self.block8 = _block8(f"{r}/Block8", scale=1.0, relu=False)
        self.bottleneck = nn.Linear(1792, EMBEDDING_SIZE, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.repeat(x)
        x = self.mixed_6a(x)
        x = self.repeat_1(x)
        x = self.mixed_7a(x)
        x = self.repeat_2(x)
        x = self.block8(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        embedding: torch.Tensor = self.bottleneck(x)
        return embedding

    def conv_units(self) -> Iterator[ConvUnit]:
        return (module for module in self.modules() if isinstance(module, ConvUnit))

    def residual_blocks(self) -> Iterator[ResidualBlock]:
        return (module for module in self.modules() if isinstance(module, ResidualBlock))
