"""The server's int8 embedding graph: ONNX Runtime's static quantisation of the float graph.

Weights are quantised per output channel to int8 and activations per tensor to uint8 (the QDQ format,
which ONNX Runtime's CPU kernels fuse into integer convolutions and products), with activation ranges
fitted once, by a developer, on real faces that no benchmark scores, and shipped as numbers:

    F=../shared/faces; python -m faceforge.building.networks.embedding_quantization fit \\
        $F/deepface_tests $F/dlib_johns $F/face_recognition_examples $F/multi

writes ``embedding_int8_ranges.json`` here (the ranges, and which photos gave them) and
``serving/vision/embedding_int8_check.json`` (the int8 graph's name and its embeddings of the start-up
check's inputs, and the same for its twin with 7-bit weights, computed with exact integer products;
``... checks`` writes that file alone again from the shipped ranges). Commit both. The benchmarks
score lfw_dev, krasserm_lfw10, unknown_singles and azure_face_samples; those folders are never fitted on.

Every machine then quantises its own float graph with those ranges (``quantize_embedding_graph``, a few
seconds, no photo needed), into both graphs: ``faceforge prepare``, a worker's start, or a child
process (``python -m faceforge.building.networks.embedding_quantization FLOAT TARGET``) for a process
that does not import this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from faceforge.building.networks.flip_passes import split_flip_passes
from faceforge.core.atomic import write_atomically, write_bytes_atomically
from faceforge.core.errors import WeightsUnavailableError
from faceforge.core.parent_watch import stop_when_orphaned_from_environment
from faceforge.serving.vision.embedder import (
    INT8_CHECK_FILE,
    SEVEN_BIT_SUFFIX,
    Int8Check,
    check_inputs,
    graph_feeds,
    int8_check_cosine,
    unit_rows,
)
from faceforge.serving.vision.face_input import FaceInputs
from faceforge.serving.vision.runtime import OnnxSession

log = logging.getLogger(__name__)

RANGES_FILE = Path(__file__).with_name("embedding_int8_ranges.json")
CHECK_SEED = 20261202
CHECK_FACES = 8
# Every confident face of a fitting photo counts (group photos hold several); below this detector score
# a face is too doubtful to say what a face's activations look like.
FIT_MIN_SCORE = 0.95


def _quantize(
    pre: Path,
    target: Path,
    *,
    ranges: Path | None,
    reader: CalibrationDataReader | None,
    seven_bit: bool = False,
) -> None:
    """QDQ, per-channel int8 weights, uint8 activations: what ONNX Runtime's guide recommends for
    x86 CPUs (u8s8), measured here at cosine 0.9985-0.9995 with the float graph on real faces.
    ``seven_bit``: weights within [-64, 64] (``reduce_range``), the twin that CPUs without VNNI compute
    exactly on the fast kernels (``SEVEN_BIT_SUFFIX`` in ``serving.vision.embedder``); the activations'
    ranges are the same."""
    quantize_static(
        str(pre),
        str(target),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=seven_bit,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        calibration_cache_path=ranges,
    )


def is_seven_bit(target: Path) -> bool:
    """Whether ``target`` names the 7-bit twin (its name says so, so the child command keeps its form)."""
    return target.name.endswith(f"{SEVEN_BIT_SUFFIX}.onnx")


def _preprocessed(float_graph: Path, folder: Path) -> Path:
    """The float graph with shapes inferred and ONNX Runtime's basic fusions applied, as the
    quantiser expects it; the ranges are keyed by its tensor names, so fitting and quantising both
    start here."""
    pre = folder / "preprocessed.onnx"
    quant_pre_process(str(float_graph), str(pre), skip_symbolic_shape=True)
    return pre


def _ranges_record(path: Path = RANGES_FILE) -> dict[str, Any]:
    try:
        record: dict[str, Any] = json.loads(path.read_text())
        return record
    except (OSError, ValueError) as error:
        raise WeightsUnavailableError(f"no usable int8 ranges in {path}: {error}") from error


def quantize_embedding_graph(float_graph: Path, target: Path, ranges_file: Path = RANGES_FILE) -> None:
    """Write the int8 graph of ``float_graph`` to ``target`` from the shipped ranges, and its parts
    beside it (``building.networks.flip_passes``; written first, so a graph that exists has them); with
    7-bit weights if ``target``'s name ends with ``SEVEN_BIT_SUFFIX``. ``WeightsUnavailableError`` if
    the ranges were fitted on another float graph."""
    record = _ranges_record(ranges_file)
    if record.get("float_graph") != float_graph.name:
        raise WeightsUnavailableError(
            f"the int8 ranges were fitted on {record.get('float_graph')}, not on {float_graph.name}"
        )
    with tempfile.TemporaryDirectory(prefix="faceforge-quantize-") as folder:
        work = Path(folder)
        ranges = work / "ranges.json"
        ranges.write_text(json.dumps(record["onnxruntime_ranges"]))
        pre = _preprocessed(float_graph, work)

        def write(temp: Path) -> None:
            _quantize(pre, temp, ranges=ranges, reader=None, seven_bit=is_seven_bit(target))
            split_flip_passes(temp, parts_of=target)

        try:
            write_atomically(target, write)
        except (KeyError, ValueError) as error:  # a tensor without a range: another exporter's names
            raise WeightsUnavailableError(
                f"the int8 ranges do not fit {float_graph.name}: {error}"
            ) from error


def exact_int8_session(graph: Path | bytes, *, threads: int = 1) -> OnnxSession:
    """A session computing ``graph``'s integer products exactly on any CPU (``EXACT_INT8_PRODUCTS`` of
    ``serving.vision.runtime``), so what a check measures is the file, not this machine's kernels.

    FaceNet's upright and mirrored passes share their quantised weights, and ONNX Runtime's exact mode
    converts a weight once per convolution that reads it, failing on the second ("Attempt to replace
    the existing tensor"); each reader gets its own copy of the weight's dequantisation here (23 MB
    more, in memory only: the file shipped to browsers stays as it is)."""
    model = onnx.load_from_string(graph) if isinstance(graph, bytes) else onnx.load(str(graph))
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in model.graph.node:
        for slot, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, slot))
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        nodes.append(node)
        if node.op_type != "DequantizeLinear" or node.input[0] not in constants:
            continue
        for copy, (reader, slot) in enumerate(readers.get(node.output[0], [])[1:], start=1):
            twin = onnx.NodeProto()
            twin.CopyFrom(node)
            twin.name = f"{node.name}/copy{copy}"
            twin.output[0] = f"{node.output[0]}/copy{copy}"
            for index, name in enumerate(node.input):  # weight, scale and zero point all converted
                if name in constants:
                    tensor = onnx.TensorProto()
                    tensor.CopyFrom(constants[name])
                    tensor.name = twin.input[index] = f"{name}/{twin.name}"  # unique: names a node
                    model.graph.initializer.append(tensor)
            reader.input[slot] = twin.output[0]
            nodes.append(twin)
    del model.graph.node[:]
    model.graph.node.extend(nodes)  # each copy right after its original: still topological
    return OnnxSession(model.SerializeToString(), threads=threads, exact_int8=True)


class _FaceReader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type hints
    """One face per calibration batch, in the float graph's input layout."""

    def __init__(self, faces: FaceInputs) -> None:
        self._faces = faces
        self._rows: Iterator[int] = iter(range(len(faces)))

    def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
        index = next(self._rows, None)
        if index is None:
            return None
        row = self._faces.rows(index, index + 1)
        face = np.ascontiguousarray(row.crops.transpose(0, 3, 1, 2), dtype=np.float32)
        chip = np.ascontiguousarray(row.chips.transpose(0, 3, 1, 2), dtype=np.float32)
        return {"face": face, "chip": chip}


def _fitting_faces(folders: Sequence[Path]) -> tuple[FaceInputs, int]:
    """Every confident face of every photo under ``folders`` (float pipeline), and the photo count."""
    from faceforge.core.config import Settings
    from faceforge.core.dataset import image_files
    from faceforge.serving.vision.pipeline import FacePipeline

    pipeline = FacePipeline(Settings(embedder_precision="float"))
    crops, chips, photos = [], [], 0
    for folder in folders:
        for path in image_files(folder):
            image = pipeline.decode(path.read_bytes())
            boxes = [face.box for face in pipeline.detect(image) if face.score >= FIT_MIN_SCORE]
            if boxes:
                inputs = pipeline.inputs(image, boxes)
                crops.append(inputs.crops)
                chips.append(inputs.chips)
                photos += 1
    return FaceInputs(np.concatenate(crops), np.concatenate(chips)), photos


def fit(folders: Sequence[Path], float_graph: Path) -> dict[str, Any]:
    """Fit the ranges on the faces of ``folders``, write the two shipped files, and return what the
    fit measured (each int8 graph against the float one on the fitting faces)."""
    faces, photos = _fitting_faces(folders)
    with tempfile.TemporaryDirectory(prefix="faceforge-fit-") as folder:
        work = Path(folder)
        pre = _preprocessed(float_graph, work)
        ranges = work / "ranges.json"
        _quantize(pre, work / "int8.onnx", ranges=ranges, reader=_FaceReader(faces))
        record = {
            "float_graph": float_graph.name,
            "facts": {
                "folders": [path.name for path in folders],
                "photos": photos,
                "faces": len(faces),
                "min_detector_score": FIT_MIN_SCORE,
                "method": "MinMax, QDQ, per-channel int8 weights, uint8 activations",
            },
            "onnxruntime_ranges": json.loads(ranges.read_text()),
        }
        write_bytes_atomically(RANGES_FILE, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    return {"photos": photos, "faces": len(faces), **record_checks(float_graph, faces)}


def record_checks(float_graph: Path, faces: FaceInputs | None = None) -> dict[str, Any]:
    """Quantise ``float_graph`` with the shipped ranges, 8-bit and 7-bit, and write the start-up check
    (``INT8_CHECK_FILE``): each graph's name and its embeddings of the check inputs, computed with
    ONNX Runtime's exact kernels so that they are the file's, not this CPU's. Returns each graph's
    own check here and, given ``faces``, its cosine with the float graph on them."""
    record = _ranges_record()
    digest = hashlib.sha256(json.dumps(record["onnxruntime_ranges"], sort_keys=True).encode())
    graph = f"{float_graph.stem}-int8-{digest.hexdigest()[:12]}"
    feeds = graph_feeds(check_inputs(CHECK_SEED, CHECK_FACES))
    check: dict[str, Any] = {"seed": CHECK_SEED}
    sessions = {}
    with tempfile.TemporaryDirectory(prefix="faceforge-checks-") as folder:
        for key, name in (("", f"{graph}.onnx"), ("seven_bit", f"{graph}{SEVEN_BIT_SUFFIX}.onnx")):
            target = Path(folder) / name
            quantize_embedding_graph(float_graph, target)
            sessions[key] = exact_int8_session(target, threads=2)
            rows = unit_rows(sessions[key].run(feeds)[0])
            entry = {"graph": name, "embeddings": [[round(float(v), 7) for v in row] for row in rows]}
            if key:
                check[key] = entry
            else:
                check.update(entry)
    write_bytes_atomically(INT8_CHECK_FILE, (json.dumps(check) + "\n").encode())
    written = Int8Check.load()
    assert written.seven_bit is not None
    measured: dict[str, Any] = {
        "graph": written.graph,
        "check_cosine_here": int8_check_cosine(sessions[""], written),
        "seven_bit_graph": written.seven_bit.graph,
        "seven_bit_check_cosine_here": int8_check_cosine(sessions["seven_bit"], written.seven_bit),
    }
    if faces is not None:
        reference = OnnxSession(float_graph, threads=2)
        for key, session in sessions.items():
            cosines = _cosines(session, reference, faces)
            prefix = f"{key}_" if key else ""
            measured[f"{prefix}float_vs_int8_cosine_min"] = float(cosines.min())
            measured[f"{prefix}float_vs_int8_cosine_mean"] = float(cosines.mean())
    return measured


def _cosines(int8: OnnxSession, reference: OnnxSession, faces: FaceInputs) -> np.ndarray[Any, Any]:
    out = []
    for start in range(0, len(faces), 16):
        rows = faces.rows(start, start + 16)
        feeds = graph_feeds(rows)
        out.append(np.sum(unit_rows(int8.run(feeds)[0]) * unit_rows(reference.run(feeds)[0]), axis=1))
    return np.concatenate(out)


USAGE = (
    "usage: python -m faceforge.building.networks.embedding_quantization FLOAT_GRAPH TARGET\n"
    "       python -m faceforge.building.networks.embedding_quantization fit FOLDER...\n"
    "       python -m faceforge.building.networks.embedding_quantization checks\n"
)


def main(argv: Sequence[str] | None = None) -> None:
    """``FLOAT_GRAPH TARGET`` (what a process without this module runs in a child), ``fit FOLDER...``,
    or ``checks`` (the check file again from the shipped ranges: a new ONNX Runtime quantiser)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if (args[:1] == ["fit"] and len(args) > 1) or args == ["checks"]:
        from faceforge.core.config import Settings
        from faceforge.serving.vision.embedder import embedding_onnx_path

        logging.basicConfig(level=logging.INFO)
        float_graph = embedding_onnx_path(Settings().weights_dir)
        if args[0] == "fit":
            measured = fit([Path(a) for a in args[1:]], float_graph)
        else:
            measured = record_checks(float_graph)
        sys.stdout.write(json.dumps(measured, indent=1) + "\n")
        return
    if len(args) != 2 or args[0].startswith("-") or args[0] in ("fit", "checks"):
        sys.stderr.write(USAGE)
        raise SystemExit(2)
    stop_when_orphaned_from_environment()
    try:
        quantize_embedding_graph(Path(args[0]), Path(args[1]))
    except WeightsUnavailableError as error:
        sys.stderr.write(f"{error.message}\n")
        raise SystemExit(1) from None
    except OSError as error:  # a float graph that is not there, a target folder that is not writable
        sys.stderr.write(f"cannot quantise {args[0]} to {args[1]}: {error.strerror or error}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
