"""Face embedder: contract crops in, L2-normalised 512-d FaceNet embeddings out.

Server-side inference runs ``FaceEmbeddingNet`` exported once to ONNX (cached beside the converted
weights) through ONNX Runtime, which is faster than eager PyTorch on the CPU; the test suite holds the
two to 1e-4. Nothing is loaded until the first call.
"""

from __future__ import annotations

import logging
import threading
from enum import StrEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from faceforge.vision.crop import CROP_SIZE
from faceforge.vision.embedding_net import FaceEmbeddingNet
from faceforge.vision.facenet import EMBEDDING_SIZE
from faceforge.vision.runtime import OnnxSession
from faceforge.weights.atomic import file_sha256, write_atomically
from faceforge.weights.facenet_weights import facenet_graph_path, load_facenet

log = logging.getLogger(__name__)

EMBEDDER_NAME = "facenet-casia-flip"
ONNX_OPSET = 18
BATCH_SIZE = 16


class EmbedderRuntime(StrEnum):
    ONNX = "onnx"
    TORCH = "torch"


def build_embedding_net(weights_dir: Path) -> FaceEmbeddingNet:
    """The PyTorch embedding network (backbone + normalisation + flip averaging) in eval mode."""
    return FaceEmbeddingNet(load_facenet(weights_dir), flip_average=True).eval()


def export_embedding_onnx(net: FaceEmbeddingNet, target: Path) -> None:
    """Export ``net`` to ONNX (torch.export) with a dynamic batch: input ``face``, output ``embedding``."""
    example = torch.zeros(2, 3, CROP_SIZE, CROP_SIZE)
    batch = torch.export.Dim("batch", min=1, max=4096)
    exporter_log = logging.getLogger("torch.onnx")
    previous_level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about every torchvision op it cannot register
    try:
        program = torch.onnx.export(
            net,
            (example,),
            input_names=["face"],
            output_names=["embedding"],
            dynamic_shapes={"pixels": {0: batch}},
            opset_version=ONNX_OPSET,
            dynamo=True,
            verbose=False,
        )
    finally:
        exporter_log.setLevel(previous_level)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    write_atomically(target, lambda temp: program.save(str(temp)))


def embedding_onnx_path(weights_dir: Path) -> Path:
    """The cached ONNX embedding graph, named after the source weights' digest; exported on first use."""
    digest = file_sha256(facenet_graph_path())[:16]
    target = weights_dir / f"{EMBEDDER_NAME}-{digest}.onnx"
    if not target.exists():
        log.info("exporting the embedding network to %s (once)", target)
        export_embedding_onnx(build_embedding_net(weights_dir), target)
    return target


class FaceEmbedder:
    """Embeds ``(N, 160, 160, 3)`` uint8 RGB crops into ``(N, 512)`` float32 unit vectors."""

    dimension = EMBEDDING_SIZE
    name = EMBEDDER_NAME

    def __init__(
        self, weights_dir: Path, *, runtime: EmbedderRuntime = EmbedderRuntime.ONNX, threads: int = 2
    ):
        self.weights_dir = weights_dir
        self.runtime = runtime
        self.threads = threads
        self._lock = threading.Lock()
        self._onnx: OnnxSession | None = None
        self._torch: FaceEmbeddingNet | None = None

    def load(self) -> None:
        with self._lock:
            if self.runtime is EmbedderRuntime.TORCH and self._torch is None:
                self._torch = build_embedding_net(self.weights_dir)
            elif self.runtime is EmbedderRuntime.ONNX and self._onnx is None:
                self._onnx = OnnxSession(embedding_onnx_path(self.weights_dir), threads=self.threads)

    def embed(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"expected (N, {CROP_SIZE}, {CROP_SIZE}, 3) crops, got {crops.shape}")
        if not len(crops):
            return np.zeros((0, self.dimension), np.float32)
        self.load()
        out = []
        for start in range(0, len(crops), BATCH_SIZE):
            pixels = crops[start : start + BATCH_SIZE].transpose(0, 3, 1, 2).astype(np.float32)
            out.append(self._run(np.ascontiguousarray(pixels)))
        return np.concatenate(out)

    def _run(self, pixels: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self._torch is not None:
            with torch.inference_mode():
                embeddings: npt.NDArray[np.float32] = self._torch(torch.from_numpy(pixels)).numpy()
                return embeddings
        assert self._onnx is not None
        return self._onnx.run({"face": pixels})[0]
