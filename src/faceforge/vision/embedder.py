"""Face embedder: ``FaceInputs`` (crop + aligned chip) in, L2-normalised 640-d fused embeddings out.

Server-side inference runs ``FaceEmbeddingNet`` (FaceNet + dlib's descriptor, ``vision.embedding_net``)
exported once to ONNX, cached beside the converted weights, through ONNX Runtime, which is faster
than eager PyTorch on the CPU; the test suite holds the two to 1e-4. Nothing is loaded until the
first call.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from enum import StrEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from faceforge.vision.align import CHIP_SIZE
from faceforge.vision.crop import CROP_SIZE
from faceforge.vision.dlib_resnet import EMBEDDING_SIZE as DLIB_SIZE
from faceforge.vision.embedding_net import DLIB_WEIGHT, FaceEmbeddingNet
from faceforge.vision.face_input import FaceInputs
from faceforge.vision.facenet import EMBEDDING_SIZE as FACENET_SIZE
from faceforge.vision.runtime import OnnxSession
from faceforge.weights.atomic import file_sha256, write_atomically
from faceforge.weights.dlib_weights import dlib_descriptor_path, load_dlib_resnet
from faceforge.weights.facenet_weights import facenet_graph_path, load_facenet

log = logging.getLogger(__name__)

# Stored with every embedding and version: a change of networks or weight re-embeds the photos.
EMBEDDER_NAME = f"facenet-dlib-w{DLIB_WEIGHT}"
EMBEDDING_SIZE = FACENET_SIZE + DLIB_SIZE
ONNX_OPSET = 18
BATCH_SIZE = 16


class EmbedderRuntime(StrEnum):
    ONNX = "onnx"
    TORCH = "torch"


def embedder_digest() -> str:
    """16 hex digits naming the source weights of both networks (cache files carry it)."""
    parts = f"{file_sha256(facenet_graph_path())}:{file_sha256(dlib_descriptor_path())}:{DLIB_WEIGHT}"
    return hashlib.sha256(parts.encode()).hexdigest()[:16]


def build_embedding_net(weights_dir: Path, **layout: bool) -> FaceEmbeddingNet:
    """The PyTorch embedding network in eval mode; ``layout`` as ``FaceEmbeddingNet`` takes it."""
    dlib, means = load_dlib_resnet(weights_dir)
    return FaceEmbeddingNet(load_facenet(weights_dir), dlib, means, **layout).eval()


def export_embedding_onnx(net: FaceEmbeddingNet, target: Path) -> None:
    """Export ``net`` to ONNX (torch.export), dynamic batch: inputs ``face`` and ``chip``, output
    ``embedding``."""
    example = (torch.zeros(2, 3, CROP_SIZE, CROP_SIZE), torch.zeros(2, 3, CHIP_SIZE, CHIP_SIZE))
    batch = torch.export.Dim("batch", min=1, max=4096)
    exporter_log = logging.getLogger("torch.onnx")
    previous_level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about every torchvision op it cannot register
    try:
        program = torch.onnx.export(
            net,
            example,
            input_names=["face", "chip"],
            output_names=["embedding"],
            dynamic_shapes={"face": {0: batch}, "chip": {0: batch}},
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
    target = weights_dir / f"{EMBEDDER_NAME}-{embedder_digest()}.onnx"
    if not target.exists():
        log.info("exporting the embedding network to %s (once)", target)
        export_embedding_onnx(build_embedding_net(weights_dir), target)
    return target


class FaceEmbedder:
    """Embeds ``FaceInputs`` into ``(N, 640)`` float32 unit vectors."""

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

    def embed(self, inputs: FaceInputs) -> npt.NDArray[np.float32]:
        if not len(inputs):
            return np.zeros((0, self.dimension), np.float32)
        self.load()
        out = []
        for start in range(0, len(inputs), BATCH_SIZE):
            rows = inputs.rows(start, start + BATCH_SIZE)
            face = np.ascontiguousarray(rows.crops.transpose(0, 3, 1, 2), dtype=np.float32)
            chip = np.ascontiguousarray(rows.chips.transpose(0, 3, 1, 2), dtype=np.float32)
            out.append(self._run(face, chip))
        return np.concatenate(out)

    def _run(self, face: npt.NDArray[np.float32], chip: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self._torch is not None:
            with torch.inference_mode():
                embeddings: npt.NDArray[np.float32] = self._torch(
                    torch.from_numpy(face), torch.from_numpy(chip)
                ).numpy()
                return embeddings
        assert self._onnx is not None
        return self._onnx.run({"face": face, "chip": chip})[0]
