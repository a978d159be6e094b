"""Face embedder: ``FaceInputs`` (crop + aligned chip) in, L2-normalised 640-d fused embeddings out.

Server-side inference runs ``FaceEmbeddingNet`` (FaceNet + dlib's descriptor, ``vision.embedding_net``)
exported once to ONNX, cached beside the converted weights, through ONNX Runtime, which is faster
than eager PyTorch on the CPU; the test suite holds the two to 1e-4. Nothing is loaded until the
first call.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import threading
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from faceforge.atomic import file_sha256
from faceforge.domain.errors import WeightsUnavailableError
from faceforge.file_lock import exclusive_lock
from faceforge.vision.embedding_space import DLIB_WEIGHT, EMBEDDER_NAME, EMBEDDING_SIZE
from faceforge.vision.face_input import FaceInputs
from faceforge.vision.runtime import OnnxSession
from faceforge.weights.sources import dlib_descriptor_path, facenet_graph_path

if TYPE_CHECKING:
    from faceforge.vision.embedding_net import FaceEmbeddingNet

log = logging.getLogger(__name__)

BATCH_SIZE = 16
# The export takes about a minute on two cores; a child still busy after this is stuck. Another
# process's export is waited for as long, plus a margin.
EXPORT_TIMEOUT_SECONDS = 900.0


class EmbedderRuntime(StrEnum):
    ONNX = "onnx"
    TORCH = "torch"


def embedder_digest() -> str:
    """16 hex digits naming the source weights of both networks (cache files carry it)."""
    parts = f"{file_sha256(facenet_graph_path())}:{file_sha256(dlib_descriptor_path())}:{DLIB_WEIGHT}"
    return hashlib.sha256(parts.encode()).hexdigest()[:16]


def embedding_onnx_path(weights_dir: Path, *, timeout: float = EXPORT_TIMEOUT_SECONDS) -> Path:
    """The cached ONNX embedding graph, named after the source weights' digest; exported on first use
    (``WeightsUnavailableError`` if that takes over ``timeout`` seconds, or another process's export
    holds the lock for longer)."""
    target = weights_dir / f"{EMBEDDER_NAME}-{embedder_digest()}.onnx"
    if not target.exists():
        log.info("exporting the embedding network to %s (once)", target)
        _export_once(weights_dir, target, timeout)
    return target


def _export_once(weights_dir: Path, target: Path, timeout: float) -> None:
    """Export in this process if it already holds PyTorch (a worker, a tool), else in a child
    process, so a process that only serves requests never loads PyTorch. One export at a time, across
    threads and processes (``torch.export`` is not thread-safe, and the work need happen only once)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(target.parent / f".{target.name}.lock", timeout=timeout * 1.2):
            if not target.exists():
                _export(weights_dir, target, timeout)
    except TimeoutError as error:
        raise WeightsUnavailableError(f"could not export the embedding network: {error}") from error


def _export(weights_dir: Path, target: Path, timeout: float) -> None:
    if "torch" in sys.modules:
        from faceforge.vision.embedding_graph import build_embedding_net, export_embedding_onnx

        export_embedding_onnx(build_embedding_net(weights_dir), target)
        return
    command = [sys.executable, "-m", "faceforge.vision.embedding_graph", str(weights_dir), str(target)]
    try:
        # On timeout ``run`` kills the child and waits for it.
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise WeightsUnavailableError(
            f"could not export the embedding network: the exporting process took over {timeout:.0f}s"
        ) from error
    if done.returncode != 0 or not target.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise WeightsUnavailableError(f"could not export the embedding network: {last}")


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
                from faceforge.vision.embedding_graph import build_embedding_net

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
            import torch

            with torch.inference_mode():
                embeddings: npt.NDArray[np.float32] = self._torch(
                    torch.from_numpy(face), torch.from_numpy(chip)
                ).numpy()
                return embeddings
        assert self._onnx is not None
        return self._onnx.run({"face": face, "chip": chip})[0]
