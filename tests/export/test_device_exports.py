"""Core ML and TFLite files of a version, held to the server's identify path on real faces.

The head is fitted on five enrolment photos per krasserm_lfw10 person, exactly as the trainer does;
the probes are every krasserm_lfw10 photo plus strangers. The server's answer is the identify path:
the ONNX embedder followed by the head's probabilities.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coremltools as ct
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
import torch

from faceforge.building.export import coreml_models
from faceforge.building.export.contract_vectors import TOLERANCE
from faceforge.building.export.coreml_checks import classifier_problems
from faceforge.building.export.device_backbones import (
    TFLITE_INT8_COSINE,
    DeviceBackboneCache,
    check_int8_backbone,
)
from faceforge.building.export.model_inputs import CHIP, FACE
from faceforge.building.export.onnx_models import head_affine
from faceforge.building.export.tflite_models import read_model, run_tflite, write_model
from faceforge.building.export.version_exports import LABELS_FILE, VersionExporter, VersionExports
from faceforge.building.head_fitting import fit_head
from faceforge.building.networks.embedding_graph import build_embedding_net
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.embedding_space import EMBEDDING_SIZE
from faceforge.core.errors import ExportError
from faceforge.core.formats import ExportFormat
from faceforge.core.model.head import RecognitionHead
from faceforge.serving.vision.embedder import unit_rows
from faceforge.serving.vision.face_input import FaceInputs
from faceforge.serving.vision.pipeline import FacePipeline, PhotoError
from tests.conftest import FACES, LFW10

ENROLLED_PER_PERSON = 5
FP32_TOLERANCE = 1e-4
FP16_UNIT_ROUNDOFF = 2.0**-11
# fp16 compute through FaceNet's ~130 layers and dlib's 29: measured 1-cos up to ~3e-5 on these faces;
# 2e-3 is the budget beyond which recognition visibly changes (bench/export_parity has the figures),
# which the contract vectors state for Core ML.
FP16_COSINE_ERROR = 1 - TOLERANCE["backbone.mlmodel"]["embedding_cosine"]
FLOAT32_SOFTMAX_SLACK = 1e-6
# Both networks' weights: FaceNet 23.5 M and dlib 5.6 M parameters.
PARAMETERS = 29.2e6


@dataclass
class Exported:
    head: RecognitionHead
    labels: list[str]  # one per output index, unknown last
    inputs: FaceInputs  # the probes' crops and chips
    expected: npt.NDArray[np.float32]  # the server's probabilities for the probes
    embeddings: npt.NDArray[np.float32]  # the server's embeddings of the probes
    exports: VersionExports
    directory: Path  # every file written there and read back from disk


def _inputs(pipeline: FacePipeline, path: Path) -> FaceInputs | None:
    image = pipeline.decode(path.read_bytes())
    faces = pipeline.detect(image)
    return pipeline.inputs(image, [faces[0].box]) if faces else None


@pytest.fixture(scope="module")
def exported(
    settings: Settings, pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory
) -> Exported:
    enrolled, enrolled_labels = [], []
    for index, folder in enumerate(sorted(p for p in LFW10.iterdir() if p.is_dir())):
        photos = image_files(folder)[:ENROLLED_PER_PERSON]
        for result in pipeline.analyze_many(photos, single_face=True):
            assert not isinstance(result, PhotoError) and not result.reasons
            assert result.faces[0].embedding is not None
            enrolled.append(result.faces[0].embedding)
            enrolled_labels.append(f"{folder.name.replace('_', ' ')} ({index + 1})")
    head = fit_head(np.stack(enrolled), enrolled_labels)

    probes = (
        image_files(LFW10)
        + image_files(FACES / "unknown_singles")
        + image_files(FACES / "azure_face_samples")
    )
    found = [inputs for inputs in (_inputs(pipeline, path) for path in probes) if inputs is not None]
    batch = FaceInputs(
        np.concatenate([one.crops for one in found]), np.concatenate([one.chips for one in found])
    )
    # Device models are float graphs, held to the server's float reference embedder; the int8
    # graph the server may run is held to that reference in tests/vision/test_int8_embedder.py.
    embeddings = pipeline.reference_embedder().embed(batch)

    exports = VersionExporter(settings.weights_dir).export(head)
    directory = tmp_path_factory.mktemp("exported")
    for name, data in exports.files.items():
        (directory / name).write_bytes(data)
    for name, source in exports.shared.items():
        (directory / name).write_bytes(source.read_bytes())
    return Exported(
        head=head,
        labels=[*head.labels, "unknown"],
        inputs=batch,
        expected=head.probabilities(embeddings),
        embeddings=embeddings,
        exports=exports,
        directory=directory,
    )


def _pixels_nhwc(inputs: FaceInputs, step: int = 1) -> dict[str, npt.NDArray[np.float32]]:
    """The TFLite models' inputs by name: NHWC float32 0-255, every ``step``-th probe."""
    return {
        FACE.name: inputs.crops[::step].astype(np.float32),
        CHIP.name: inputs.chips[::step].astype(np.float32),
    }


def test_labels_file_names_every_output_index(exported: Exported) -> None:
    lines = (exported.directory / LABELS_FILE).read_text().splitlines()
    assert lines == exported.labels
    assert lines[-1] == "unknown" and len(lines) == 11
    assert lines[0] == "Ariel Sharon (1)"


def test_tflite_fp32_matches_the_server(exported: Exported) -> None:
    fused = (exported.directory / "model.tflite").read_bytes()
    probabilities = run_tflite(fused, _pixels_nhwc(exported.inputs))
    assert probabilities.shape == exported.expected.shape
    np.testing.assert_allclose(probabilities, exported.expected, atol=FP32_TOLERANCE)

    # The people are recognised and the strangers are rejected by the model alone.
    predicted = [exported.labels[i] for i in probabilities.argmax(axis=1)]
    assert sum(label != "unknown" for label in predicted[:100]) >= 95
    # Strangers: the version is calibrated to reject 97 % of them; the model rejects the server's.
    server = [exported.labels[i] for i in exported.expected.argmax(axis=1)]
    strangers = predicted[100:]
    assert sum(label == "unknown" for label in strangers) >= 0.9 * len(strangers)
    assert [label == "unknown" for label in strangers] == [label == "unknown" for label in server[100:]]


def test_tflite_split_equals_fused(exported: Exported) -> None:
    subset = _pixels_nhwc(exported.inputs, 8)
    backbone = (exported.directory / "backbone.tflite").read_bytes()
    head = (exported.directory / "head.tflite").read_bytes()
    embeddings = run_tflite(backbone, subset)
    np.testing.assert_allclose(embeddings, exported.embeddings[::8], atol=FP32_TOLERANCE)
    split = run_tflite(head, embeddings)
    fused = run_tflite((exported.directory / "model.tflite").read_bytes(), subset)
    np.testing.assert_allclose(split, fused, atol=FP32_TOLERANCE)
    assert len(head) < 1_000_000


def test_one_parsed_tflite_backbone_serves_every_version(exported: Exported, settings: Settings) -> None:
    """A worker parses each TFLite backbone once and fuses every version's head onto it: fusing
    must leave the parsed backbone as it was, so a later version is what a fresh worker builds."""
    exporter = VersionExporter(settings.weights_dir, (ExportFormat.TFLITE,))
    first = exporter.export(exported.head).files
    assert first["model.tflite"] == exported.exports.files["model.tflite"]
    smaller = dataclasses.replace(
        exported.head,
        labels=exported.head.labels[:4],
        prototypes=exported.head.prototypes[:4],
        counts=exported.head.counts[:4],
        margins=exported.head.margins[:4],
    )
    second = exporter.export(smaller).files
    assert len(second["model.tflite"]) < len(first["model.tflite"])
    expected = smaller.probabilities(exported.embeddings[:16:8])
    probabilities = run_tflite(second["model.tflite"], _pixels_nhwc(exported.inputs.rows(0, 16), 8))
    np.testing.assert_allclose(probabilities, expected, atol=FP32_TOLERANCE)
    again = exporter.export(exported.head).files
    for name in ("model.tflite", "model_int8.tflite"):
        assert again[name] == first[name]


def test_tflite_int8_agrees_with_the_server_on_top1(exported: Exported) -> None:
    quantized = (exported.directory / "model_int8.tflite").read_bytes()
    assert len(quantized) <= PARAMETERS * 1.1  # one byte per weight, and the graph
    probabilities = run_tflite(quantized, _pixels_nhwc(exported.inputs))
    agreement = float(np.mean(probabilities.argmax(axis=1) == exported.expected.argmax(axis=1)))
    assert agreement >= 0.99, agreement

    subset = _pixels_nhwc(exported.inputs, 16)
    split = run_tflite(
        (exported.directory / "head.tflite").read_bytes(),
        run_tflite((exported.directory / "backbone_int8.tflite").read_bytes(), subset),
    )
    np.testing.assert_allclose(split, probabilities[::16], atol=FP32_TOLERANCE)


def test_every_backbone_file_that_runs_here_meets_the_contract_vectors_tolerance(exported: Exported) -> None:
    """``contract_vectors.json`` tells an app how close its runtime's embedding and probabilities
    come to ours, per backbone file; it named only the ONNX ones. Each file that runs here is held
    to its entry on half the probe faces (bench/export_parity measures all), embedding and
    probabilities (the version's own head model on the backbone's embedding: a fused model equals
    the two, ``test_tflite_split_equals_fused``); Core ML's is held by the float16 emulation below."""
    nhwc = _pixels_nhwc(exported.inputs, 2)  # every other face: 62 of them, the strangers among them
    nchw = {name: np.ascontiguousarray(value.transpose(0, 3, 1, 2)) for name, value in nhwc.items()}
    reference, expected = exported.embeddings[::2], exported.expected[::2]

    def onnx(name: str) -> npt.NDArray[np.float32]:
        session = ort.InferenceSession(str(exported.exports.shared[name]), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, nchw)[0], np.float32)

    def tflite(name: str) -> npt.NDArray[np.float32]:
        return run_tflite((exported.directory / name).read_bytes(), nhwc)

    head = (exported.directory / "head.tflite").read_bytes()
    # backbone.onnx is the reference itself (the float graph these embeddings come from).
    runs = {
        "backbone_int8.onnx": onnx("backbone_int8.onnx"),  # the browser's: backbone + head.onnx
        "backbone.tflite": tflite("backbone.tflite"),
        "backbone_int8.tflite": tflite("backbone_int8.tflite"),
    }
    assert set(runs) | {"pixels", "backbone.onnx", "backbone.mlmodel", "platform_scaler"} == set(TOLERANCE)
    for name, embeddings in runs.items():
        unit = unit_rows(embeddings)
        cosine = float(np.sum(unit * reference, axis=1).min())
        assert cosine >= TOLERANCE[name]["embedding_cosine"], (name, cosine)
        # The split files' pipeline (backbone, then head.tflite), which the fused model equals.
        probabilities = (
            exported.head.probabilities(unit) if name.endswith(".onnx") else run_tflite(head, embeddings)
        )
        difference = float(np.abs(probabilities - expected).max())
        assert difference <= TOLERANCE[name]["probability"], (name, difference)


def test_an_int8_tflite_backbone_unlike_the_float_one_is_refused(settings: Settings) -> None:
    """Converting holds the quantised backbone to the float one: versions only checked that their
    fused int8 model equals this backbone plus their head, so a quantisation gone wrong reached every
    phone that chose the int8 files."""
    paths = DeviceBackboneCache(settings.weights_dir).tflite()
    float_model, int8_model = paths.tflite.read_bytes(), paths.tflite_int8.read_bytes()
    assert check_int8_backbone(float_model, int8_model) >= TFLITE_INT8_COSINE
    model = read_model(int8_model)
    largest = max(model.buffers, key=lambda buffer: 0 if buffer.data is None else len(buffer.data))
    largest.data = largest.data[::-1].copy()  # a layer's int8 weights in the wrong order
    with pytest.raises(ExportError, match="quantisation went wrong"):
        check_int8_backbone(float_model, write_model(model))


def _load(path: Path) -> Any:
    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


def _float16(values: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(values, "<f2").astype(np.float32)


def _coreml_head(layers: Any, classes: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The fp16 weights and bias of the head's innerProduct layer in a NeuralNetwork classifier."""
    (head,) = [
        layer.innerProduct
        for layer in layers
        if layer.name.startswith("head_") and layer.WhichOneof("layer") == "innerProduct"
    ]
    return _float16(head.weights.float16Value).reshape(classes, -1), _float16(head.bias.float16Value)


def _softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), np.float32)


def test_core_ml_head_is_what_coremltools_converts(exported: Exported) -> None:
    """The head's spec is written by hand (quick at 10,000 people); coremltools, converting the same
    affine map and softmax from PyTorch, must give the same layers, weights, labels and interface."""
    weights, bias = head_affine(exported.head)
    ours = coreml_models.head_spec(weights, bias, exported.labels)
    linear = torch.nn.Linear(weights.shape[0], weights.shape[1])
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weights.T))
        linear.bias.copy_(torch.from_numpy(bias))
    module = torch.nn.Sequential(linear, torch.nn.Softmax(dim=1)).eval()
    converted = ct.convert(
        coreml_models.trace(module, (torch.zeros(1, weights.shape[0]),)),
        inputs=[ct.TensorType(name="embedding", shape=(1, weights.shape[0]))],
        classifier_config=ct.ClassifierConfig(exported.labels, predicted_feature_name="classLabel"),
        convert_to="neuralnetwork",
        skip_model_load=True,
    ).get_spec()
    ct.utils.rename_feature(converted, converted.description.predictedProbabilitiesName, "classLabelProbs")
    coreml_models.to_float16(converted.neuralNetworkClassifier.layers)

    assert ours.specificationVersion == converted.specificationVersion
    for field in ("input", "output", "predictedFeatureName", "predictedProbabilitiesName"):
        assert getattr(ours.description, field) == getattr(converted.description, field), field
    network, reference = ours.neuralNetworkClassifier, converted.neuralNetworkClassifier
    assert [layer.WhichOneof("layer") for layer in network.layers] == ["innerProduct", "softmaxND"]
    assert [layer.WhichOneof("layer") for layer in reference.layers] == ["innerProduct", "softmaxND"]
    assert network.layers[0].innerProduct == reference.layers[0].innerProduct  # fp16 bytes included
    assert network.layers[1].softmaxND == reference.layers[1].softmaxND
    assert network.layers[0].input == ["embedding"] and network.layers[1].output == ["classLabelProbs"]
    assert network.layers[0].output == network.layers[1].input
    assert network.stringClassLabels == reference.stringClassLabels
    assert network.labelProbabilityLayerName == reference.labelProbabilityLayerName
    assert network.arrayInputShapeMapping == reference.arrayInputShapeMapping
    assert network.imageInputShapeMapping == reference.imageInputShapeMapping


def test_coreml_neural_network_classifier(exported: Exported) -> None:
    path = exported.directory / "model.mlmodel"
    assert path.stat().st_size <= PARAMETERS * 2 * 1.05  # fp16: two bytes per weight
    spec = _load(path)
    assert spec.WhichOneof("Type") == "neuralNetworkClassifier"
    assert classifier_problems(spec, exported.labels) == []

    face, chip = spec.description.input
    assert (face.name, chip.name) == ("face", "chip")
    assert (face.type.imageType.width, face.type.imageType.height) == (160, 160)
    assert (chip.type.imageType.width, chip.type.imageType.height) == (150, 150)
    assert face.type.imageType.colorSpace == chip.type.imageType.colorSpace == face.type.imageType.RGB
    scalers = {p.featureName: p.scaler for p in spec.neuralNetworkClassifier.preprocessing}
    assert scalers["face"].channelScale == pytest.approx(1 / 128)
    for bias in (scalers["face"].redBias, scalers["face"].greenBias, scalers["face"].blueBias):
        assert bias == pytest.approx(-127.5 / 128)
    # dlib's input layer: (v - mean_c) / 256 with its RGB means.
    assert scalers["chip"].channelScale == pytest.approx(1 / 256)
    chip_biases = (scalers["chip"].redBias, scalers["chip"].greenBias, scalers["chip"].blueBias)
    assert chip_biases == pytest.approx((-122.782 / 256, -117.001 / 256, -104.298 / 256))
    outputs = {feature.name: feature.type.WhichOneof("Type") for feature in spec.description.output}
    assert outputs == {"classLabel": "stringType", "classLabelProbs": "dictionaryType"}
    assert spec.description.predictedFeatureName == "classLabel"
    assert spec.description.predictedProbabilitiesName == "classLabelProbs"
    assert list(spec.neuralNetworkClassifier.stringClassLabels.vector) == exported.labels

    layers = spec.neuralNetworkClassifier.layers
    convolutions = [layer.convolution for layer in layers if layer.WhichOneof("layer") == "convolution"]
    assert len(convolutions) > 100
    assert all(len(c.weights.float16Value) and not len(c.weights.floatValue) for c in convolutions)

    # The head's fp16 weights, applied to the server's embeddings, give the server's probabilities.
    weights, bias = _coreml_head(layers, len(exported.labels))
    probabilities = _softmax(exported.embeddings @ weights.T + bias)
    no_embedding_error = np.zeros(len(probabilities), np.float32)
    _assert_probabilities_within(
        probabilities, exported.expected, _logit_error_bound(exported.head, no_embedding_error)
    )


def _float16_emulation(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` as fp16 hardware computes it, deterministically on any CPU: every weight and every
    activation entering or leaving a layer is rounded to fp16, while the arithmetic stays fp32.
    (PyTorch's own CPU fp16 kernels round and accumulate differently by instruction set and thread
    count, so running ``net.half()`` gives a different answer on each machine.)"""
    emulated = copy.deepcopy(net).float().eval()
    with torch.no_grad():
        for tensor in [*emulated.parameters(), *emulated.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())

    def round_inputs(_: torch.nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(_to_float16_grid(value) for value in inputs)

    def round_output(_: torch.nn.Module, __: tuple[Any, ...], output: Any) -> Any:
        return _to_float16_grid(output)

    for module in emulated.modules():
        if not list(module.children()):  # a leaf layer: convolution, normalisation, activation...
            module.register_forward_pre_hook(round_inputs)
            module.register_forward_hook(round_output)
    return emulated


def _to_float16_grid(value: Any) -> Any:
    return value.half().float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value


def _logit_error_bound(
    head: RecognitionHead, embedding_errors: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Per face, the most any logit can move: the embedding error through the head's weights, plus
    fp16 rounding of the weights, the bias and the embedding itself.

    Logit ``j`` is ``W_j . e + b_j`` with ``|W_j| = scale`` (a unit prototype, or zero for unknown).
    With ``e'`` the device's embedding and ``u = 2^-11`` (fp16's unit roundoff), each term moves by at
    most ``scale * |e' - e|``, ``scale * u`` (rounding e'), ``scale * u`` (rounding W_j) and ``u |b_j|``."""
    weights, bias = head_affine(head)
    largest = float(np.linalg.norm(weights, axis=0).max())
    return np.asarray(
        largest * (embedding_errors + 2 * FP16_UNIT_ROUNDOFF)
        + FP16_UNIT_ROUNDOFF * float(np.abs(bias).max()),
        np.float32,
    )


def _assert_probabilities_within(
    actual: npt.NDArray[np.float32], expected: npt.NDArray[np.float32], logit_bounds: npt.NDArray[np.float32]
) -> None:
    """Softmax moves each probability by at most a factor ``exp(+-2M)`` when no logit moves by more
    than ``M``, so ``|p' - p| <= p (exp(2M) - 1)``: a bound derived from the scale, not a constant."""
    allowed = expected * np.expm1(2 * logit_bounds)[:, None] + FLOAT32_SOFTMAX_SLACK
    excess = np.abs(actual - expected) - allowed
    assert excess.max() <= 0, (
        f"{int((excess > 0).sum())} probabilities beyond their bound, worst by {excess.max()}"
    )


def _decision_margins(head: RecognitionHead, embeddings: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """How far, in cosine, each face's decision is from changing: the best similarity against the
    runner-up and the threshold (whichever is nearer)."""
    similarities = np.concatenate(
        [head.similarities(embeddings), np.full((len(embeddings), 1), head.threshold, np.float32)], axis=1
    )
    ordered = np.sort(similarities, axis=1)
    return np.asarray(ordered[:, -1] - ordered[:, -2], np.float32)


def test_float16_compute_stays_within_tolerance(exported: Exported, settings: Settings) -> None:
    """Core ML runs these models in fp16 on the device, which cannot be run here. Emulate it (fp16
    weights and activations, one thread), then apply the head's fp16 weights read from model.mlmodel,
    and hold the result to the server where the physics is: the embedding's cosine error, every
    decision whose margin is clear of that error, and probabilities within the bound the error implies."""
    net = _float16_emulation(
        build_embedding_net(settings.weights_dir, channels_last=True, normalise_pixels=True, stack_flip=True)
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fp32 sums in a fixed order
    try:
        with torch.inference_mode():
            pixels = {name: torch.from_numpy(value) for name, value in _pixels_nhwc(exported.inputs).items()}
            count = len(exported.inputs)
            device = torch.cat(
                [net(pixels["face"][i : i + 16], pixels["chip"][i : i + 16]) for i in range(0, count, 16)]
            ).numpy()
    finally:
        torch.set_num_threads(threads)
    device = device.astype(np.float16).astype(np.float32)  # the embedding output as fp16

    cosine_error = 1 - np.sum(device * exported.embeddings, axis=1) / np.linalg.norm(device, axis=1)
    assert cosine_error.max() <= FP16_COSINE_ERROR, cosine_error.max()
    embedding_errors = np.linalg.norm(device - exported.embeddings, axis=1)

    layers = _load(exported.directory / "model.mlmodel").neuralNetworkClassifier.layers
    weights, bias = _coreml_head(layers, len(exported.labels))
    probabilities = _softmax(device @ weights.T + bias)

    # A face whose decision is further from flipping than twice its embedding error (plus the
    # rounding of the head) must get the server's decision; nearly every face is that clear.
    rounding = 2 * FP16_UNIT_ROUNDOFF * (1 + abs(exported.head.threshold))
    clear = _decision_margins(exported.head, exported.embeddings) > 2 * (embedding_errors + rounding)
    assert clear.mean() >= 0.9, clear.mean()
    agree = probabilities.argmax(axis=1) == exported.expected.argmax(axis=1)
    assert agree[clear].all(), np.flatnonzero(clear & ~agree)

    _assert_probabilities_within(
        probabilities, exported.expected, _logit_error_bound(exported.head, embedding_errors)
    )
    stated = TOLERANCE["backbone.mlmodel"]["probability"]  # what the contract vectors tell an iOS app
    assert np.abs(probabilities - exported.expected).max() <= stated


def test_coreml_ml_program(exported: Exported, tmp_path: Path) -> None:
    with zipfile.ZipFile(exported.directory / "model.mlpackage.zip") as archive:
        assert {Path(name).parts[0] for name in archive.namelist()} == {"model.mlpackage"}
        archive.extractall(tmp_path)
    spec = _load(tmp_path / "model.mlpackage")
    assert spec.WhichOneof("Type") == "mlProgram"
    assert classifier_problems(spec, exported.labels) == []
    assert [feature.name for feature in spec.description.input] == ["face", "chip"]
    assert {feature.name for feature in spec.description.output} == {"classLabel", "classLabelProbs"}

    function = spec.mlProgram.functions["main"]
    operations = list(function.block_specializations[function.opset].operations)
    assert [op.type for op in operations[-4:]] == ["softmax", "const", "cast", "classify"]
    linear = [op for op in operations if op.type == "linear"][-1]  # the head's, after the bottleneck's
    constants = {op.outputs[0].name: op.attributes["val"] for op in operations if op.type == "const"}
    weights = _float16(
        constants[linear.inputs["weight"].arguments[0].name].immediateValue.tensor.bytes.values
    )
    bias = _float16(constants[linear.inputs["bias"].arguments[0].name].immediateValue.tensor.bytes.values)
    probabilities = _softmax(exported.embeddings @ weights.reshape(len(exported.labels), -1).T + bias)
    no_embedding_error = np.zeros(len(probabilities), np.float32)
    _assert_probabilities_within(
        probabilities, exported.expected, _logit_error_bound(exported.head, no_embedding_error)
    )
    blob_types = {
        value.type.tensorType.dataType for value in constants.values() if value.HasField("blobFileValue")
    }
    assert blob_types == {ct.proto.MIL_pb2.FLOAT16}


def test_coreml_split_and_pipeline(exported: Exported) -> None:
    backbone = _load(exported.directory / "backbone.mlmodel")
    head = _load(exported.directory / "head.mlmodel")
    assert backbone.WhichOneof("Type") == "neuralNetwork"
    assert [f.name for f in backbone.description.output] == ["embedding"]
    assert list(backbone.description.output[0].type.multiArrayType.shape) == [1, EMBEDDING_SIZE]
    assert [f.name for f in head.description.input] == ["embedding"]
    assert list(head.neuralNetworkClassifier.stringClassLabels.vector) == exported.labels
    assert (exported.directory / "head.mlmodel").stat().st_size < 1_000_000

    pipeline = _load(exported.directory / "pipeline.mlmodel")
    assert pipeline.WhichOneof("Type") == "pipelineClassifier"
    assert classifier_problems(pipeline, exported.labels) == []
    first, second = pipeline.pipelineClassifier.pipeline.models
    assert [f.name for f in first.description.output] == [f.name for f in second.description.input]
    assert first == backbone  # the cached backbone itself, not a reconversion


def test_spec_checks_catch_broken_files(exported: Exported) -> None:
    spec = _load(exported.directory / "pipeline.mlmodel")
    assert classifier_problems(spec, exported.labels[::-1])  # labels out of order
    spec.pipelineClassifier.pipeline.models[1].description.input[0].name = "features"
    assert any("needs ['features']" in problem for problem in classifier_problems(spec, exported.labels))

    fused = _load(exported.directory / "model.mlmodel")
    fused.neuralNetworkClassifier.preprocessing[0].scaler.channelScale = 1 / 255
    fused.neuralNetworkClassifier.layers[0].convolution.weights.floatValue.extend([0.5])
    problems = classifier_problems(fused, exported.labels)
    assert any("face scale" in problem for problem in problems)
    assert any("float32 weights" in problem for problem in problems)


def test_manifest_describes_every_variant(exported: Exported) -> None:
    files = set(exported.exports.files) | set(exported.exports.shared)
    variants = exported.exports.manifest["variants"]
    assert {name for variant in variants.values() for name in variant["files"]} <= files
    assert variants["coreml_split"]["files"] == ["backbone.mlmodel", "head.mlmodel"]
    assert variants["tflite_split"]["files"] == ["backbone.tflite", "head.tflite", "labels.txt"]
    assert set(exported.exports.seconds) == {"onnx", "coreml", "tflite"}
    assert exported.exports.manifest["coreml"]["labels"] == exported.labels


def test_exporting_leaves_nothing_in_the_temp_dir(
    exported: Exported, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Converters write temporary packages; a worker builds versions for months, so each export must
    delete what it made (coremltools alone would keep one .mlpackage per version until exit)."""
    temp = tmp_path / "system-temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    exports = VersionExporter(settings.weights_dir).export(exported.head)
    assert "model.mlpackage.zip" in exports.files
    assert sorted(p.name for p in temp.iterdir()) == []
