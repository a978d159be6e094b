"""On-device backbones (face crop -> embedding), converted once per backbone and cached.

Converting the embedding network to Core ML or TFLite takes seconds to tens of seconds, far more than
a version may spend, so it happens once: the files live under ``<weights>/device/``, in a directory
named after the embedder and the digest of its source weights (plus a format revision), and every
version links to them. Building is serialised across threads and processes by a file lock, and
each file appears atomically, so a half-converted backbone is never read.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from faceforge.building.export.quiet import quiet_conversion_tools
from faceforge.building.networks.embedding_quantization import CHECK_FACES, CHECK_SEED
from faceforge.core.atomic import file_sha256
from faceforge.core.checksums import (
    matches_record,
    record_path,
    record_sha256,
    recorded_sha256,
    write_with_checksum,
)
from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.core.errors import ExportError, FaceforgeError
from faceforge.core.file_lock import exclusive_lock
from faceforge.core.native_logs import native_chatter_filtered
from faceforge.core.parent_watch import stop_when_orphaned
from faceforge.serving.vision.embedder import check_inputs, embedder_digest, unit_rows
from faceforge.serving.vision.mtcnn import source_graph

if TYPE_CHECKING:
    from faceforge.building.networks.embedding_net import FaceEmbeddingNet

log = logging.getLogger(__name__)

# Bump when the conversion or the checksum records change, so caches made by older code are not reused.
DEVICE_FORMAT_REVISION = 4
REFINER_FORMAT_REVISION = 3  # 3: refiner.onnx recorded before it is written
# Converting every backbone takes a few minutes on two cores; a process holding the lock longer hangs.
CONVERSION_LOCK_TIMEOUT_SECONDS = 1800.0

# What a conversion makes: the refiner in every format, or the Core ML or the TFLite backbones.
Conversion = Literal["refiner", "coreml", "tflite"]
# How close the int8 TFLite backbone (dynamic-range: int8 weights, float activations) must stay to the
# float one: 1 - cosine at most three times quantisation's own on real faces (cosine 0.99972 at worst
# on krasserm_lfw10's 110 faces, 0.99969 on the check's inputs), so about 1.7 times its distance.
# Caches converted before the check (revision 4 too) are not checked again: versions have shipped them.
TFLITE_INT8_COSINE = 1 - 3 * (1 - 0.9997)
PROGRAM_WEIGHTS = Path("Data/com.apple.CoreML/weights/weight.bin")
PROGRAM_SPEC = Path("Data/com.apple.CoreML/model.mlmodel")
# The files of the ML Program package that versions copy (``coreml_models.ml_program_package``), each
# with its checksum record: the spec and the manifest go into every model.mlpackage.zip as the weights
# do (and any other weight file coremltools wrote beside weight.bin: ``program_files``).
PROGRAM_FILES = (Path("Manifest.json"), PROGRAM_SPEC, PROGRAM_WEIGHTS)


def program_files(package: Path) -> list[Path]:
    weights = sorted((package / PROGRAM_WEIGHTS.parent).glob("*.bin"))
    return [package / name for name in PROGRAM_FILES[:-1]] + (weights or [package / PROGRAM_WEIGHTS])


@dataclass(frozen=True, slots=True)
class RefinerFiles:
    onnx: Path
    tflite: Path
    coreml: Path


@dataclass(frozen=True, slots=True)
class DeviceBackbones:
    coreml: Path  # NeuralNetwork .mlmodel, fp16 weights, image input
    coreml_program: Path  # .mlpackage directory, ML Program, fp16
    tflite: Path  # fp32, NHWC 0-255 input
    tflite_int8: Path  # dynamic-range int8 weights


class DeviceBackboneCache:
    def __init__(self, weights_dir: Path) -> None:
        self.weights_dir = weights_dir
        self._lock = threading.Lock()
        self._digest: str | None = None
        self._verified: dict[Path, tuple[int, int, int]] = {}

    @property
    def directory(self) -> Path:
        if self._digest is None:
            self._digest = embedder_digest()
        digest = self._digest
        return self.weights_dir / "device" / f"{EMBEDDER_NAME}-{digest}-r{DEVICE_FORMAT_REVISION}"

    def paths(self) -> DeviceBackbones:
        root = self.directory
        return DeviceBackbones(
            coreml=root / "backbone.mlmodel",
            coreml_program=root / "backbone.mlpackage",
            tflite=root / "backbone.tflite",
            tflite_int8=root / "backbone_int8.tflite",
        )

    @property
    def refiner_directory(self) -> Path:
        digest = file_sha256(source_graph("onet"))[:16]
        return self.weights_dir / "device" / f"refiner-{digest}-r{REFINER_FORMAT_REVISION}"

    def refiner(self) -> RefinerFiles:
        """The refiner in every format (a few seconds, once), checked against recorded checksums."""
        root = self.refiner_directory
        files = RefinerFiles(root / "refiner.onnx", root / "refiner.tflite", root / "refiner.mlmodel")
        self._ensure([files.onnx, files.tflite, files.coreml], "refiner", root=root)
        self._verify([files.onnx, files.tflite, files.coreml])
        return files

    # The conversions import their converters (and PyTorch) themselves: they run in a child process
    # of their own (``_convert_in_child``), and a server whose versions are ONNX alone never needs
    # them (importing PyTorch cost each server start 2.2 s of a core).
    def _build_refiner(self, _: DeviceBackbones) -> None:
        from faceforge.building.export import refiner_models

        quiet_conversion_tools()  # again: importing PyTorch (with refiner_models) resets its loggers
        root = self.refiner_directory
        files = RefinerFiles(root / "refiner.onnx", root / "refiner.tflite", root / "refiner.mlmodel")
        if not files.onnx.exists():
            # The record first, as for every cached file: a file without its record (a process
            # stopped between the two) was taken for a damaged one and failed the next export.
            write_with_checksum(files.onnx, refiner_models.convert_onnx(self.weights_dir))
        if not files.tflite.exists():
            write_with_checksum(files.tflite, refiner_models.convert_tflite(self.weights_dir))
        if not files.coreml.exists():
            write_with_checksum(files.coreml, refiner_models.convert_coreml(self.weights_dir))

    def coreml(self) -> DeviceBackbones:
        """The Core ML backbones, converted now if missing, checked against their recorded checksums."""
        paths = self.paths()
        self._ensure([paths.coreml, paths.coreml_program], "coreml")
        program = program_files(paths.coreml_program)
        for path in program[:2]:
            if path.is_file() and not record_path(path).exists():
                # A package converted when only its weights were recorded: its spec and manifest are
                # recorded as found rather than the revision bumped, which would convert Core ML and
                # TFLite again (a minute and a half) on every upgraded worker; its weights are checked.
                recorded_sha256(path)
        self._verify([paths.coreml, *program], package=paths.coreml_program)
        return paths

    def tflite(self) -> DeviceBackbones:
        """The TFLite backbones, converted now if missing, checked against their recorded checksums."""
        paths = self.paths()
        self._ensure([paths.tflite, paths.tflite_int8], "tflite")
        self._verify([paths.tflite, paths.tflite_int8])
        return paths

    def _verify(self, files: list[Path], *, package: Path | None = None) -> None:
        """Every version links or copies these files, so a damaged one must never be published.

        A file that no longer matches the checksum recorded when it was converted is removed, with the
        whole ``package`` it belongs to if any (the next export converts it again: a package left
        without its weights counted as converted, and every later export failed on the missing file),
        and this export fails with the reason. So is a file that is missing.
        """
        for path in files:
            try:
                stat = path.stat()
            except FileNotFoundError:
                stat = None
            stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns) if stat else None
            if stamp is not None and self._verified.get(path) == stamp:
                continue
            if stamp is None or not matches_record(path):
                damaged = package if package is not None and package in path.parents else path
                log.error("cached backbone %s does not match its checksum; removing it", damaged)
                if damaged.is_dir():
                    shutil.rmtree(damaged, ignore_errors=True)
                else:
                    damaged.unlink(missing_ok=True)
                raise ExportError(
                    f"the cached on-device backbone {damaged.name} was damaged (checksum mismatch); "
                    "it was removed and will be converted again"
                )
            self._verified[path] = stamp

    def _ensure(self, wanted: list[Path], build: Conversion, *, root: Path | None = None) -> None:
        if all(path.exists() for path in wanted):
            return
        root = root or self.directory
        root.mkdir(parents=True, exist_ok=True)
        try:
            # Another process may be converting right now; one that hangs must not stop this one.
            with self._lock, exclusive_lock(root / ".lock", timeout=CONVERSION_LOCK_TIMEOUT_SECONDS):
                self._build_missing(wanted, build)
        except TimeoutError as error:
            raise ExportError(f"could not convert the on-device backbones: {error}") from error

    def _build_missing(self, wanted: list[Path], build: Conversion) -> None:
        if all(path.exists() for path in wanted):
            return
        started = time.perf_counter()
        _convert_in_child(self.weights_dir, build)
        log.info(
            "converted on-device backbones %s in %.1fs",
            [p.name for p in wanted],
            time.perf_counter() - started,
        )

    def _network(self, *, channels_last: bool, normalise_pixels: bool) -> FaceEmbeddingNet:
        from faceforge.building.networks.embedding_graph import build_embedding_net

        return build_embedding_net(
            self.weights_dir, channels_last=channels_last, normalise_pixels=normalise_pixels, stack_flip=True
        )

    def _build_coreml(self, paths: DeviceBackbones) -> None:
        from faceforge.building.export import coreml_models

        net = self._network(channels_last=False, normalise_pixels=False)
        if not paths.coreml.exists():
            spec = coreml_models.convert_backbone(net)
            summary = (
                "faceforge face embedding: 160x160 face crop + 150x150 aligned chip -> 640-d unit vector"
            )
            write_with_checksum(paths.coreml, coreml_models.serialize(coreml_models.describe(spec, summary)))
        if not paths.coreml_program.exists():
            staging = Path(tempfile.mkdtemp(prefix=".backbone-", dir=paths.coreml_program.parent))
            try:
                package = staging / paths.coreml_program.name
                coreml_models.convert_backbone_program(net, package)
                for path in program_files(package):
                    record_sha256(path)
                os.replace(package, paths.coreml_program)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _build_tflite(self, paths: DeviceBackbones) -> None:
        from faceforge.building.export import tflite_models

        if not paths.tflite.exists():
            model = tflite_models.convert_backbone(self._network(channels_last=True, normalise_pixels=True))
            write_with_checksum(paths.tflite, model)
        if not paths.tflite_int8.exists():
            quantized = tflite_models.quantize_dynamic_int8(paths.tflite.read_bytes())
            check_int8_backbone(paths.tflite.read_bytes(), quantized)
            write_with_checksum(paths.tflite_int8, quantized)


def check_int8_backbone(float_model: bytes, int8_model: bytes) -> float:
    """The smallest cosine between the two TFLite backbones' embeddings of the int8 check's inputs
    (``check_inputs``: smooth colour fields, no photo shipped); ``ExportError`` below
    ``TFLITE_INT8_COSINE``. Versions check that their fused int8 model equals this backbone plus
    their head, so without this nothing compared the quantised backbone itself with the float one."""
    from faceforge.building.export import tflite_models

    faces = check_inputs(CHECK_SEED, CHECK_FACES)
    pixels = (faces.crops.astype(np.float32), faces.chips.astype(np.float32))  # NHWC, 0-255
    feeds = dict(zip(tflite_models.INPUT_NAMES, pixels, strict=True))
    reference = unit_rows(tflite_models.run_tflite(float_model, feeds))
    quantized = unit_rows(tflite_models.run_tflite(int8_model, feeds))
    cosine = float(np.sum(reference * quantized, axis=1).min())
    if not cosine >= TFLITE_INT8_COSINE:
        raise ExportError(
            f"the int8 TFLite backbone reaches cosine {cosine:.5f} with the float one, under "
            f"{TFLITE_INT8_COSINE:.5f}: its quantisation went wrong"
        )
    return cosine


def _convert_in_child(weights_dir: Path, conversion: Conversion) -> None:
    """Convert in a process of its own: the converters (PyTorch, coremltools, the TFLite converter)
    leave some 0.75 GB in a process that used them, which a server's embedded trainer kept for its
    whole life after a first start (2.0 GB resident against 1.3 after a restart, measured). The child
    is daemonic, so a server stopped meanwhile ends it instead of waiting minutes for it; one that
    fails says why (``ExportError``), one that is killed (out of memory) says so."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_convert,
        args=(weights_dir, conversion, send, os.getpid()),
        name=f"faceforge-convert-{conversion}",
    )
    child.daemon = True
    child.start()
    send.close()  # the child's end: the pipe reads as closed once the child is gone
    try:
        if not receive.poll(CONVERSION_LOCK_TIMEOUT_SECONDS):
            seconds = CONVERSION_LOCK_TIMEOUT_SECONDS
            raise ExportError(f"converting the {conversion} backbones took more than {seconds:.0f} s")
        failure: str | None = receive.recv()
    except EOFError:
        child.join(timeout=10)
        failure = (
            f"the process converting the {conversion} backbones ended abruptly (exit code "
            f"{child.exitcode}; out of memory?)"
        )
    finally:
        receive.close()
        if child.is_alive():
            child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join()
    if failure is not None:
        raise ExportError(failure)


def _convert(weights_dir: Path, conversion: Conversion, report: Connection, parent: int) -> None:
    """Run in the conversion's own process (``_convert_in_child``), which the caller (``parent``)
    started holding the conversion's locks; sends ``None``, or what went wrong. Stops if the caller
    is killed outright (``core.parent_watch``): its daemonic flag ends it only on a normal exit."""
    stop_when_orphaned(parent)
    quiet_conversion_tools()
    failure: str | None = None
    try:
        cache = DeviceBackboneCache(weights_dir)
        builds = {
            "refiner": cache._build_refiner,
            "coreml": cache._build_coreml,
            "tflite": cache._build_tflite,
        }
        # Filtered here, not in the caller: a process the caller starts meanwhile (multiprocessing's
        # resource tracker) would keep the filter's pipe open, and the caller would wait for ever.
        with native_chatter_filtered():
            builds[conversion](cache.paths())
    except Exception as error:  # said by the caller, in the caller's logs and the version's status
        failure = error.message if isinstance(error, FaceforgeError) else f"{type(error).__name__}: {error}"
    report.send(failure)
    report.close()
