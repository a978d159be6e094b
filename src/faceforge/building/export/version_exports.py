"""The on-device files of one model version, built from cached backbones and the version's head.

Every file is verified before the version may be published -- otherwise the export raises
``ExportError`` and the version fails with the reason; the previous version stays:

- head models (``head.onnx``, ``head.tflite``) are fed the head's prototypes themselves and real face
  embeddings (the enrolled photos'), whose outputs must be the head's probabilities: a head whose
  rows or labels are shuffled fails at once;
- fused models must reproduce backbone + head on a probe batch of images;
- Core ML specs (which cannot run here) must pass ``classifier_problems``.

Outputs are compared as log-probabilities. A fitted head's scale is large, so most probabilities are
tiny (on a probe image every person may get 1e-20): absolute differences cannot tell a right head
from a wrong one, while their logarithms differ by whole nats.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from faceforge.building.export import coreml_models
from faceforge.building.export.coreml_checks import classifier_problems
from faceforge.building.export.device_backbones import PROGRAM_SPEC, DeviceBackboneCache
from faceforge.building.export.model_inputs import MODEL_INPUTS
from faceforge.building.export.onnx_models import fused_model, head_affine, head_model, opset_of
from faceforge.building.networks.embedding_graph import export_embedding_graph
from faceforge.building.networks.embedding_quantization import (
    CHECK_FACES,
    CHECK_SEED,
    exact_int8_session,
    quantize_embedding_graph,
)
from faceforge.core.checksums import matches_record, write_with_checksum
from faceforge.core.embedding_space import EMBEDDING_SIZE
from faceforge.core.errors import ExportError, WeightsUnavailableError
from faceforge.core.formats import ExportFormat
from faceforge.core.interrupts import import_held
from faceforge.core.model.head import RecognitionHead
from faceforge.serving.vision.embedder import (
    Int8Check,
    check_inputs,
    embedding_onnx_path,
    graph_feeds,
    int8_onnx_path,
    unit_rows,
)
from faceforge.serving.vision.mtcnn import cached_graphs
from faceforge.serving.vision.runtime import OnnxSession

# Float32 softmax resolves probabilities down to about e^-87; below this floor all count as "none".
LOG_PROBABILITY_FLOOR = -60.0
# How far a converted fp32 backbone's embedding may be from the server's (an L2 distance; the device
# export tests hold TFLite's to 1e-4 per component, typically ~1e-5): moves a logit by scale * drift.
EMBEDDING_DRIFT = 1e-3
# A head model given the very same embeddings differs only by float32 rounding of its dot products.
HEAD_ROUNDING = EMBEDDING_SIZE * float(np.finfo(np.float32).eps)
LOG_SLACK = 1e-3  # the softmax's own float32 rounding, in nats
HEAD_PROBES = 256  # prototypes, and real embeddings, each head model is checked on (evenly spaced)
UNKNOWN_LABEL = "unknown"
LABELS_FILE = "labels.txt"
PROBE_SEED = 0
PROBE_COUNT = 2
# The browser client's files by role (``variants.browser`` in the manifest). Its backbone is the
# server's int8 graph (static quantisation, ``building.networks.embedding_quantization``): 31 MB instead
# of 118 MB, and in ONNX Runtime Web's WASM its integer kernels run it in 105 ms where the float32
# graph takes 230 (one thread, measured in Chromium). Its twin with 7-bit weights: the 8-bit graph's
# products saturate in ONNX Runtime's fast x86 kernels on a CPU without VNNI (AVX2 alone), where an
# app running the file natively met cosine 0.853 with the float graph (0.986 median; 124 real faces,
# AMD EPYC with AVX2 only). The twin's products cannot saturate, so every runtime computes the file
# exactly: cosine 0.9986 at worst on those faces (0.9991 for the 8-bit graph computed exactly), what
# the server itself runs on such CPUs (README, "In the browser").
BROWSER_BACKBONE = "backbone_int8.onnx"
BROWSER_FILES = {
    "pnet": "detector_pnet.onnx",
    "rnet": "detector_rnet.onnx",
    "refiner": "refiner.onnx",
    "backbone": BROWSER_BACKBONE,
    "head": "head.onnx",
}
# How close the int8 backbone's embeddings must stay to the float graph's, on the int8 start-up check's
# inputs (smooth colour fields within the fitted ranges; random noise would measure clipping): a
# cosine three times quantisation's own error on real faces (0.9984 at worst for the 8-bit graph;
# 0.9986 for the 7-bit twin shipped).
BROWSER_BACKBONE_COSINE = 1 - 3 * (1 - 0.9984)
# Bump when what the browser backbone is made from changes (3: the 7-bit twin).
BROWSER_BACKBONE_REVISION = 3

FloatArray = npt.NDArray[np.float32]


class FileSink(Protocol):
    """Where a version's files go as they are made (the store's ``VersionStaging``)."""

    def add(self, name: str, data: bytes) -> None: ...

    def link(self, name: str, source: Path) -> None: ...


@dataclass
class VersionExports:
    files: dict[str, bytes] = field(default_factory=dict)
    shared: dict[str, Path] = field(default_factory=dict)  # identical for every version: hard-linked
    manifest: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # Receives every file the moment it is made, so that it is written while the rest are built and
    # checked (a file whose check then fails goes with the whole staged version).
    sink: FileSink | None = None

    def add(self, name: str, data: bytes) -> None:
        self.files[name] = data
        if self.sink is not None:
            self.sink.add(name, data)

    def link(self, name: str, source: Path) -> None:
        self.shared[name] = source
        if self.sink is not None:
            self.sink.link(name, source)

    def add_variant(self, name: str, **description: Any) -> None:
        self.manifest.setdefault("variants", {})[name] = description

    def merge(self, other: VersionExports) -> None:
        self.files.update(other.files)
        self.shared.update(other.shared)
        self.seconds.update(other.seconds)
        variants = {**self.manifest.get("variants", {}), **other.manifest.get("variants", {})}
        self.manifest.update(other.manifest)
        if variants:
            self.manifest["variants"] = variants


class FormatExporter(Protocol):
    def export(self, head: RecognitionHead, into: VersionExports, probes: FloatArray) -> None:
        """Build the format's files into ``into``; head models are checked on ``probes``
        (``head_probes``)."""
        ...


def device_labels(head: RecognitionHead) -> list[str]:
    """One label per output index of every exported model: the people, then ``unknown``. A label
    holding a line break would shift every later line of ``labels.txt`` by one (names have refused
    them only since commit 564d210; a name stored before may hold one): refused, naming the label."""
    broken = [label for label in head.labels if len(f"{label}x".splitlines()) != 1]
    if broken:
        raise ExportError(
            f"the name of {broken[0]!r} holds a line break, which labels.txt cannot carry: rename them"
        )
    return [*head.labels, UNKNOWN_LABEL]


def probe_faces() -> dict[str, npt.NDArray[np.float32]]:
    """A fixed 0-255 NCHW batch per model input (``face`` ``(2, 3, 160, 160)``, ``chip``
    ``(2, 3, 150, 150)``), used to check that fused models equal their parts."""
    random = np.random.default_rng(PROBE_SEED)
    return {
        spec.name: random.uniform(0, 255, (PROBE_COUNT, 3, spec.size, spec.size)).astype(np.float32)
        for spec in MODEL_INPUTS
    }


def channels_last(batch: dict[str, npt.NDArray[np.float32]]) -> dict[str, npt.NDArray[np.float32]]:
    return {name: np.ascontiguousarray(value.transpose(0, 2, 3, 1)) for name, value in batch.items()}


def _inputs_manifest(layout: str) -> list[dict[str, object]]:
    shapes = {"NCHW": lambda size: ["batch", 3, size, size], "NHWC": lambda size: [1, size, size, 3]}
    return [
        spec.as_dict() | {"shape": shapes[layout](spec.size), "layout": layout, "dtype": "float32"}
        for spec in MODEL_INPUTS
    ]


def head_probes(head: RecognitionHead, samples: FloatArray | None = None) -> FloatArray:
    """The embeddings every head model is checked on: the head's prototypes (each must give its own
    person the top probability) and ``samples``, real face embeddings such as the enrolled photos';
    at most ``HEAD_PROBES`` of each, evenly spaced."""
    rows = [_spaced(head.prototypes)]
    if samples is not None and len(samples):
        rows.append(_spaced(np.asarray(samples, np.float32)))
    return np.ascontiguousarray(np.concatenate(rows), dtype=np.float32)


def _spaced(rows: FloatArray) -> FloatArray:
    if len(rows) <= HEAD_PROBES:
        return rows
    return rows[np.linspace(0, len(rows) - 1, HEAD_PROBES).round().astype(np.int64)]


def log_probabilities(probabilities: FloatArray) -> FloatArray:
    """Natural logs, floored at ``LOG_PROBABILITY_FLOOR`` (a zero from underflow included)."""
    tiny = np.finfo(np.float32).tiny
    logs = np.log(np.maximum(np.asarray(probabilities, np.float32), tiny))
    return np.maximum(logs, np.float32(LOG_PROBABILITY_FLOOR))


def check_outputs(
    what: str, actual: FloatArray, expected: FloatArray, head: RecognitionHead, *, drift: float
) -> None:
    """Raise ``ExportError`` unless a model's probabilities ``actual`` are the head's ``expected``, as
    log-probabilities within ``2 * scale * drift`` (a logit moves by at most ``scale * drift`` when its
    embedding moves by ``drift``, the normaliser by as much again) plus the softmax's rounding."""
    tolerance = 2.0 * head.scale * drift + LOG_SLACK
    if actual.shape != expected.shape:
        raise ExportError(f"{what} answers shape {actual.shape}, not {expected.shape}")
    difference = float(np.abs(log_probabilities(actual) - log_probabilities(expected)).max())
    if not difference <= tolerance:  # NaN fails too
        raise ExportError(
            f"{what} does not reproduce backbone + head "
            f"(log-probabilities differ by up to {difference:.3g}, tolerance {tolerance:.3g})"
        )


class OnnxExporter:
    """``backbone.onnx`` (shared, the server's own embedding graph), ``head.onnx``, ``model.onnx`` (fused)."""

    def __init__(self, weights_dir: Path, backbones: DeviceBackboneCache) -> None:
        self.weights_dir = weights_dir
        self.backbones = backbones
        self._lock = threading.Lock()
        self._backbone: tuple[Path, onnx.ModelProto, OnnxSession] | None = None
        self._probe_embeddings: FloatArray | None = None
        self._browser_backbone: Path | None = None

    def _load_backbone(self) -> tuple[Path, onnx.ModelProto, OnnxSession]:
        with self._lock:
            if self._backbone is None:
                path = embedding_onnx_path(self.weights_dir, export=export_embedding_graph)
                model = onnx.load(str(path))
                # The process's session of the float graph (the reference embedder's), not one more.
                session = OnnxSession(path, threads=1)
                self._backbone = (path, model, session)
            return self._backbone

    def probe_embeddings(self) -> FloatArray:
        """The server's embeddings of ``probe_faces()``: the reference every format is held to."""
        if self._probe_embeddings is None:
            _, _, session = self._load_backbone()
            self._probe_embeddings = np.asarray(session.run_raw(probe_faces())[0], np.float32)
        return self._probe_embeddings

    def browser_backbone(self) -> Path:
        """The server's int8 graph's 7-bit twin (``BROWSER_BACKBONE``) as the browser's and apps'
        backbone, copied once per backbone beside the device backbones with its checksum; held to the
        float graph (``BROWSER_BACKBONE_COSINE``) when made, re-hashed against its record before each
        version links it."""
        path, _, reference = self._load_backbone()
        with self._lock:
            folder = self.weights_dir / "device" / f"{path.stem}-int8-r{BROWSER_BACKBONE_REVISION}"
            target = folder / BROWSER_BACKBONE
            if self._browser_backbone is not None and matches_record(target):
                return target
            if not matches_record(target):
                try:
                    twin = Int8Check.load().seven_bit
                    if twin is None:
                        raise WeightsUnavailableError("the int8 check records no graph with 7-bit weights")
                    source = int8_onnx_path(
                        self.weights_dir, path, quantize=quantize_embedding_graph, check=twin
                    )
                except WeightsUnavailableError as error:
                    raise ExportError(f"no int8 backbone for the browser: {error.message}") from error
                data = source.read_bytes()
                # The check is of the file, not of this CPU's kernels (the same numbers for the twin:
                # its products are exact on the fast kernels too).
                feeds = graph_feeds(check_inputs(CHECK_SEED, CHECK_FACES))
                ours = unit_rows(exact_int8_session(data).run(feeds)[0])
                exact = unit_rows(np.asarray(reference.run_raw(feeds)[0], np.float32))
                cosine = float(np.sum(ours * exact, axis=1).min())
                if not cosine >= BROWSER_BACKBONE_COSINE:
                    raise ExportError(
                        f"{BROWSER_BACKBONE} reaches cosine {cosine:.5f} with the float graph, "
                        f"under {BROWSER_BACKBONE_COSINE:.4f}"
                    )
                folder.mkdir(parents=True, exist_ok=True)
                write_with_checksum(target, data)
            self._browser_backbone = target
            return target

    def export(self, head: RecognitionHead, into: VersionExports, probes: FloatArray) -> None:
        path, backbone, _ = self._load_backbone()
        head_graph = head_model(head, opset=opset_of(backbone), ir_version=backbone.ir_version)
        head_bytes = head_graph.SerializeToString()
        fused = fused_model(backbone, head_graph).SerializeToString()
        into.add("model.onnx", fused)  # written while it is checked
        into.add("head.onnx", head_bytes)
        head_session = ort.InferenceSession(head_bytes, providers=["CPUExecutionProvider"])
        check_outputs(
            "head.onnx",
            np.asarray(head_session.run(None, {"embedding": probes})[0], np.float32),
            head.probabilities(probes),
            head,
            drift=HEAD_ROUNDING,
        )
        session = ort.InferenceSession(fused, providers=["CPUExecutionProvider"])
        expected = head.probabilities(self.probe_embeddings())
        check_outputs(
            "model.onnx",
            np.asarray(session.run(None, probe_faces())[0], np.float32),
            expected,
            head,
            drift=EMBEDDING_DRIFT,
        )
        into.link("backbone.onnx", path)
        into.link("refiner.onnx", self.backbones.refiner().onnx)
        detector = cached_graphs(self.weights_dir)
        for role in ("pnet", "rnet"):
            into.link(f"detector_{role}.onnx", detector / f"{role}.onnx")
        into.link(BROWSER_BACKBONE, self.browser_backbone())
        into.manifest["onnx"] = {
            "inputs": _inputs_manifest("NCHW"),
            "output": {
                "name": "probabilities",
                "shape": ["batch", len(head.labels) + 1],
                "labels": device_labels(head),
            },
            "embedding": {"name": "embedding", "shape": ["batch", head.prototypes.shape[1]]},
        }
        into.add_variant("onnx_fused", files=["model.onnx"], inputs=["face", "chip"], output="probabilities")
        into.add_variant(
            "onnx_split",
            files=["backbone.onnx", "head.onnx"],
            pipeline="backbone.onnx(face, chip) -> embedding -> head.onnx(embedding) -> probabilities",
            note="backbone.onnx is the same file (same sha256) in every version: download it once",
        )
        into.add_variant(
            "browser",
            files=[*BROWSER_FILES.values()],
            roles=BROWSER_FILES,
            note="the browser client (GET /client/faceforge.js): MTCNN's P-Net and R-Net as shipped (the "
            "server runs them rewritten, to the same numbers), the refiner (also MTCNN's third stage), "
            f"the server's int8 embedding graph in its twin with 7-bit weights ({BROWSER_BACKBONE}: static "
            "quantisation, QDQ, run by ONNX Runtime's integer kernels, which cannot saturate its products) "
            "and "
            "the head; all but head.onnx are the same files in every version",
        )


class CoreMLExporter:
    """``model.mlmodel`` (NeuralNetwork classifier), ``model.mlpackage.zip`` (ML Program), and the
    split files ``backbone.mlmodel`` (shared) + ``head.mlmodel``, also composed as ``pipeline.mlmodel``."""

    def __init__(self, backbones: DeviceBackboneCache) -> None:
        self.backbones = backbones

    def export(self, head: RecognitionHead, into: VersionExports, probes: FloatArray) -> None:
        paths = self.backbones.coreml()
        labels = device_labels(head)
        weights, bias = head_affine(head)
        backbone = coreml_models.load_spec(paths.coreml.read_bytes())
        summary = (
            f"faceforge face recognition: {len(head.labels)} people + unknown; "
            "inputs: 160x160 face crop and 150x150 aligned chip"
        )
        head_spec = coreml_models.describe(coreml_models.head_spec(weights, bias, labels), summary)
        fused = coreml_models.describe(coreml_models.fused_classifier_spec(backbone, head_spec), summary)
        pipeline = coreml_models.describe(coreml_models.pipeline_spec(backbone, head_spec), summary)
        program_backbone = coreml_models.load_spec((paths.coreml_program / PROGRAM_SPEC).read_bytes())
        with coreml_models.head_program(weights, bias, labels) as head_program:
            program = coreml_models.describe(
                coreml_models.fused_program_spec(
                    program_backbone, head_program.get_spec(), Path(head_program.weights_dir)
                ),
                summary,
            )
        for name, spec in (
            ("model.mlmodel", fused),
            ("pipeline.mlmodel", pipeline),
            ("model.mlpackage.zip", program),
        ):
            problems = classifier_problems(spec, labels)
            if problems:
                raise ExportError(f"{name} is not a valid classifier: {'; '.join(problems)}")
        into.add("model.mlmodel", coreml_models.serialize(fused))
        into.add("pipeline.mlmodel", coreml_models.serialize(pipeline))
        into.add("head.mlmodel", coreml_models.serialize(head_spec))
        into.add("model.mlpackage.zip", coreml_models.ml_program_package(program, paths.coreml_program))
        into.link("backbone.mlmodel", paths.coreml)
        into.link("refiner.mlmodel", self.backbones.refiner().coreml)
        into.manifest["coreml"] = {
            "inputs": [
                spec.as_dict()
                | {"type": "image", "preprocessing": {"scale": spec.scale, "bias_rgb": list(spec.bias)}}
                for spec in MODEL_INPUTS
            ],
            "outputs": {
                coreml_models.CLASS_LABEL: "string: the best label (a person, or unknown)",
                coreml_models.CLASS_PROBABILITIES: "dictionary label -> probability",
            },
            "labels": labels,
            "weights": "float16",
        }
        into.add_variant(
            "coreml_neuralnetwork",
            files=["model.mlmodel"],
            note="compile on the device with MLModel.compileModel",
        )
        into.add_variant(
            "coreml_mlprogram",
            files=["model.mlpackage.zip"],
            minimum_deployment_target=coreml_models.ML_PROGRAM_TARGET,
            note="unzip to model.mlpackage, then compile",
        )
        into.add_variant(
            "coreml_split",
            files=["backbone.mlmodel", "head.mlmodel"],
            pipeline=(
                "backbone.mlmodel(face, chip) -> embedding -> head.mlmodel(embedding) -> classLabel(Probs)"
            ),
            composed="pipeline.mlmodel",
            note="backbone.mlmodel is the same file (same sha256) in every version: download it once",
        )


class TfliteExporter:
    """``model.tflite`` (fp32), ``model_int8.tflite`` (dynamic-range int8), ``head.tflite``, and the
    shared ``backbone.tflite`` / ``backbone_int8.tflite``. ``labels.txt`` names the output indices."""

    def __init__(self, backbones: DeviceBackboneCache, reference: Callable[[], FloatArray]) -> None:
        self.backbones = backbones
        self.reference = reference  # the server's embeddings of probe_faces()
        self._int8_probe: FloatArray | None = None
        self._backbones: dict[Path, Any] = {}

    def _parsed(self, path: Path) -> Any:
        """The backbone at ``path`` as a ``ModelT``, parsed once per worker (0.1 s of every version
        otherwise; ``fuse`` leaves it unchanged). Costs its weights' size in memory (140 MB)."""
        from faceforge.building.export import tflite_models

        if path not in self._backbones:
            self._backbones[path] = tflite_models.read_model(path.read_bytes())
        return self._backbones[path]

    def export(self, head: RecognitionHead, into: VersionExports, probes: FloatArray) -> None:
        # Imported here: the TFLite runtime's library (libLiteRt) has no place in a worker whose
        # versions leave TFLite out.
        from faceforge.building.export import tflite_models

        paths = self.backbones.tflite()
        weights, bias = head_affine(head)
        head_bytes = tflite_models.write_model(tflite_models.head_model(weights, bias))
        into.add("head.tflite", head_bytes)
        fused = tflite_models.write_model(
            tflite_models.fuse(self._parsed(paths.tflite), tflite_models.read_model(head_bytes))
        )
        into.add("model.tflite", fused)  # each written while the next is built and all are checked
        fused_int8 = tflite_models.write_model(
            tflite_models.fuse(self._parsed(paths.tflite_int8), tflite_models.read_model(head_bytes))
        )
        into.add("model_int8.tflite", fused_int8)
        check_outputs(
            "head.tflite",
            tflite_models.run_tflite(head_bytes, probes),
            head.probabilities(probes),
            head,
            drift=HEAD_ROUNDING,
        )
        probe = channels_last(probe_faces())
        check_outputs(
            "model.tflite",
            tflite_models.run_tflite(fused, probe),
            head.probabilities(self.reference()),
            head,
            drift=EMBEDDING_DRIFT,
        )
        if self._int8_probe is None:
            self._int8_probe = tflite_models.run_tflite(paths.tflite_int8.read_bytes(), probe)
        check_outputs(  # against the int8 backbone's own embeddings: this checks the fusion
            "model_int8.tflite",
            tflite_models.run_tflite(fused_int8, probe),
            head.probabilities(self._int8_probe),
            head,
            drift=EMBEDDING_DRIFT,
        )
        into.link("backbone.tflite", paths.tflite)
        into.link("refiner.tflite", self.backbones.refiner().tflite)
        into.link("backbone_int8.tflite", paths.tflite_int8)
        into.manifest["tflite"] = {
            "inputs": _inputs_manifest("NHWC"),
            "output": {"name": tflite_models.PROBABILITIES, "shape": [1, len(head.labels) + 1]},
            "signature": tflite_models.SIGNATURE_KEY,
            "labels_file": LABELS_FILE,
        }
        into.add_variant("tflite_fused", files=["model.tflite", LABELS_FILE], precision="float32")
        into.add_variant(
            "tflite_int8",
            files=["model_int8.tflite", LABELS_FILE],
            precision="int8 weights, float32 activations",
        )
        for name, backbone in (
            ("tflite_split", "backbone.tflite"),
            ("tflite_int8_split", "backbone_int8.tflite"),
        ):
            into.add_variant(
                name,
                files=[backbone, "head.tflite", LABELS_FILE],
                pipeline=f"{backbone}(face, chip) -> embedding -> head.tflite(embedding) -> probabilities",
                note=f"{backbone} is the same file (same sha256) in every version: download it once",
            )


# What each format's per-version files are built and checked with, beyond ONNX Runtime.
CONVERSION_LIBRARIES: dict[ExportFormat, tuple[str, ...]] = {
    ExportFormat.ONNX: (),
    ExportFormat.COREML: ("torch", "coremltools"),
    ExportFormat.TFLITE: ("ai_edge_litert.interpreter",),
}


class VersionExporter:
    """Builds every requested format for a version; each format's build time lands in ``seconds``."""

    def __init__(self, weights_dir: Path, formats: tuple[ExportFormat, ...] = tuple(ExportFormat)) -> None:
        self.formats = formats
        self.backbones = DeviceBackboneCache(weights_dir)
        self.onnx = OnnxExporter(weights_dir, self.backbones)
        self.coreml = CoreMLExporter(self.backbones)
        self.tflite = TfliteExporter(self.backbones, self.onnx.probe_embeddings)

    def prepare(self, on_step: Callable[[int, int], None] = lambda done, total: None) -> None:
        """Convert any missing backbone now (worker start-up), not during the first training.
        ``on_step(done, total)`` is called before each backbone and at the end."""
        steps = [self.backbones.refiner] + [
            convert
            for export_format, convert in (
                (ExportFormat.COREML, self.backbones.coreml),
                (ExportFormat.TFLITE, self.backbones.tflite),
            )
            if export_format in self.formats
        ]
        for done, convert in enumerate(steps):
            on_step(done, len(steps))
            convert()
        on_step(len(steps), len(steps))

    def export(
        self,
        head: RecognitionHead,
        formats: tuple[ExportFormat, ...] | None = None,
        *,
        sink: FileSink | None = None,
        samples: FloatArray | None = None,
    ) -> VersionExports:
        """Every format of ``formats`` (default: the configured ones) for ``head``, merged; ``sink``
        receives each file as soon as it is made (``VersionExports.sink``). Head models are checked
        on the prototypes and on ``samples`` (real face embeddings, e.g. the enrolled ones)."""
        # The libraries the formats build with, imported with Ctrl-C held: interrupted half-way
        # through (where a build first met them), PyTorch stayed half-initialised (core.interrupts).
        chosen = formats or self.formats
        import_held(*(name for export_format in chosen for name in CONVERSION_LIBRARIES[export_format]))
        probes = head_probes(head, samples)
        exporters: dict[ExportFormat, FormatExporter] = {
            ExportFormat.ONNX: self.onnx,
            ExportFormat.COREML: self.coreml,
            ExportFormat.TFLITE: self.tflite,
        }
        exports = VersionExports(sink=sink)
        exports.add(LABELS_FILE, ("\n".join(device_labels(head)) + "\n").encode())
        # One format after another: building them on threads side by side was slower (measured at
        # 1,000 people: 3.5 s against 2.9 s), the Python parts (protobuf and flatbuffer builders,
        # coremltools) holding the GIL; the sink's writer threads overlap the disk instead.
        for export_format in chosen:
            part = VersionExports(sink=sink)
            started = time.perf_counter()
            exporters[export_format].export(head, part, probes)
            part.seconds[export_format.value] = round(time.perf_counter() - started, 3)
            exports.merge(part)
        return exports
