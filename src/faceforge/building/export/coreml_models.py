"""Core ML files for a model version.

- backbone (NeuralNetwork, converted once per backbone and cached): two images, ``face`` 160x160
  and ``chip`` 150x150 RGB (``building.export.model_inputs``), each normalised by fixed image preprocessing
  -> ``embedding`` (1, 640).
- head (NeuralNetwork classifier, per version, tiny): ``embedding`` -> ``classLabel`` +
  ``classLabelProbs`` over the version's labels with ``unknown`` last.
- fused ``model.mlmodel``: one NeuralNetwork classifier, the backbone's layers followed by the
  head's, composed from the cached backbone spec without reconverting it.
- pipeline: a Core ML pipeline classifier of the two, also composed from the cached spec.
- ML Program (iOS 16+): the whole network converted per version with fp16 compute.

All weights are stored as fp16. Core ML cannot run on Linux, so these files are verified by
inspecting their specs (``check_classifier_spec``).
"""

from __future__ import annotations

import io
import logging
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from faceforge.building.export.model_inputs import MODEL_INPUTS
from faceforge.building.export.quiet import quiet_conversion_tools
from faceforge.core.embedding_space import EMBEDDING_SIZE
from faceforge.core.interrupts import import_held

if TYPE_CHECKING:  # PyTorch is imported where a network is traced (a worker exporting ONNX alone never)
    import torch

    from faceforge.building.networks.embedding_net import FaceEmbeddingNet

log = logging.getLogger(__name__)

EMBEDDING = "embedding"
CLASS_LABEL = "classLabel"
CLASS_PROBABILITIES = "classLabelProbs"
HEAD_PREFIX = "head_"
ML_PROGRAM_TARGET = "iOS16"
CONVERSION_DATE_KEY = "com.github.apple.coremltools.conversion_date"
# What the head's layers need (softmaxND: Core ML 3, iOS 13), as coremltools writes for them.
HEAD_SPECIFICATION_VERSION = 4
HEAD_LOGITS = "logits"
# Layers whose weights Core ML reads as fp16 (what coremltools' own fp16 quantisation converts).
FLOAT16_LAYERS = ("convolution", "innerProduct", "batchnorm", "batchedMatMul", "scale", "bias")


def coremltools() -> Any:
    quiet_conversion_tools()
    import_held("coremltools")  # heavy; only when Core ML files are built or checked
    import coremltools

    return coremltools


def image_inputs() -> list[Any]:
    ct = coremltools()
    return [
        ct.ImageType(
            name=spec.name,
            shape=(1, 3, spec.size, spec.size),
            scale=spec.scale,
            bias=list(spec.bias),
            color_layout=ct.colorlayout.RGB,
        )
        for spec in MODEL_INPUTS
    ]


def _examples() -> tuple[torch.Tensor, ...]:
    import torch

    return tuple(torch.zeros(1, 3, spec.size, spec.size) for spec in MODEL_INPUTS)


def _check_layout(net: FaceEmbeddingNet) -> None:
    if net.channels_last or net.normalise_pixels or not net.stack_flip:
        raise ValueError(
            "the Core ML backbone takes NCHW pixels normalised by image preprocessing, flip stacked"
        )


def convert_backbone(net: FaceEmbeddingNet) -> Any:
    """The embedding network as a NeuralNetwork spec with fp16 weights (done once per backbone)."""
    _check_layout(net)
    ct = coremltools()
    traced = trace(net.eval(), _examples())
    model = ct.convert(
        traced,
        inputs=image_inputs(),
        outputs=[ct.TensorType(name=EMBEDDING)],
        convert_to="neuralnetwork",
        skip_model_load=True,
    )
    spec = model.get_spec()
    embedding = spec.description.output[0].type.multiArrayType
    del embedding.shape[:]
    embedding.shape.extend([1, EMBEDDING_SIZE])
    spec.description.output[0].shortDescription = "L2-normalised face embedding"
    to_float16(spec.neuralNetwork.layers)
    return spec


def to_float16(layers: Any) -> None:
    """Store every float32 weight of ``layers`` as fp16 (halves the file; Core ML computes in fp16 anyway)."""
    for layer in layers:
        kind = layer.WhichOneof("layer")
        if kind in FLOAT16_LAYERS:
            _weights_to_float16(getattr(layer, kind))


def _weights_to_float16(message: Any) -> None:
    for field, value in message.ListFields():
        if field.message_type is None or field.is_repeated:
            continue
        if field.message_type.name == "WeightParams":
            if len(value.floatValue):
                values = np.asarray(value.floatValue, np.float32)
                value.float16Value = values.astype("<f2").tobytes()
                value.ClearField("floatValue")
        else:
            _weights_to_float16(value)


def head_spec(weights: npt.NDArray[np.float32], bias: npt.NDArray[np.float32], labels: list[str]) -> Any:
    """``embedding`` -> ``classLabel`` / ``classLabelProbs``: ``softmax(E @ W + b)``, fp16 weights.

    Written straight into the NeuralNetwork schema: the same two layers (an inner product, a
    softmax over axis 1) that converting a traced ``Linear`` + ``Softmax`` with coremltools gives,
    which took 0.34 s of every version at 1,000 people and 2.4 s at 10,000 (a test holds the two
    equal).
    """
    dimension, classes = weights.shape
    if bias.shape != (classes,) or len(labels) != classes:
        raise ValueError(f"{classes} outputs need {classes} biases and labels")
    ct = coremltools()
    spec = ct.proto.Model_pb2.Model()
    spec.specificationVersion = HEAD_SPECIFICATION_VERSION
    description = spec.description
    embedding = description.input.add()
    embedding.name = EMBEDDING
    embedding.type.multiArrayType.shape.extend([1, dimension])
    embedding.type.multiArrayType.dataType = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    probabilities = description.output.add()
    probabilities.name = CLASS_PROBABILITIES
    probabilities.type.dictionaryType.stringKeyType.SetInParent()
    label = description.output.add()
    label.name = CLASS_LABEL
    label.type.stringType.SetInParent()
    description.predictedFeatureName = CLASS_LABEL
    description.predictedProbabilitiesName = CLASS_PROBABILITIES
    description.metadata.userDefined["com.github.apple.coremltools.version"] = ct.__version__

    network = spec.neuralNetworkClassifier
    network.arrayInputShapeMapping = ct.proto.NeuralNetwork_pb2.NeuralNetworkMultiArrayShapeMapping.Value(
        "EXACT_ARRAY_MAPPING"
    )
    network.imageInputShapeMapping = ct.proto.NeuralNetwork_pb2.NeuralNetworkImageShapeMapping.Value(
        "RANK4_IMAGE_MAPPING"
    )
    linear = network.layers.add()
    linear.name = "linear"
    linear.input.append(EMBEDDING)
    linear.output.append(HEAD_LOGITS)
    product = linear.innerProduct
    product.inputChannels = dimension
    product.outputChannels = classes
    product.hasBias = True
    # Core ML's inner product stores W as (outputs, inputs), row-major.
    product.weights.float16Value = np.ascontiguousarray(weights.T).astype("<f2").tobytes()
    product.bias.float16Value = bias.astype("<f2").tobytes()
    softmax = network.layers.add()
    softmax.name = "softmax"
    softmax.input.append(HEAD_LOGITS)
    softmax.output.append(CLASS_PROBABILITIES)
    softmax.softmaxND.axis = 1
    network.stringClassLabels.vector.extend(labels)
    network.labelProbabilityLayerName = CLASS_PROBABILITIES
    return spec


def fused_classifier_spec(backbone: Any, head: Any) -> Any:
    """One NeuralNetwork classifier: the backbone's layers, then the head's (blob names prefixed)."""
    spec = _classifier_shell(backbone, head)
    network = spec.neuralNetworkClassifier
    network.preprocessing.extend(backbone.neuralNetwork.preprocessing)
    network.arrayInputShapeMapping = backbone.neuralNetwork.arrayInputShapeMapping
    network.imageInputShapeMapping = backbone.neuralNetwork.imageInputShapeMapping
    network.layers.extend(backbone.neuralNetwork.layers)
    keep = {EMBEDDING, CLASS_PROBABILITIES}
    for source in head.neuralNetworkClassifier.layers:
        layer = network.layers.add()
        layer.CopyFrom(source)
        layer.name = HEAD_PREFIX + layer.name
        layer.input[:] = [name if name in keep else HEAD_PREFIX + name for name in layer.input]
        layer.output[:] = [name if name in keep else HEAD_PREFIX + name for name in layer.output]
    network.stringClassLabels.CopyFrom(head.neuralNetworkClassifier.stringClassLabels)
    probabilities_blob = head.neuralNetworkClassifier.labelProbabilityLayerName
    network.labelProbabilityLayerName = (
        probabilities_blob if probabilities_blob in keep else HEAD_PREFIX + probabilities_blob
    )
    return spec


def _classifier_shell(backbone: Any, head: Any) -> Any:
    """An empty classifier spec taking the backbone's input and giving the head's outputs."""
    spec = coremltools().proto.Model_pb2.Model()
    spec.specificationVersion = max(backbone.specificationVersion, head.specificationVersion)
    spec.description.input.extend(backbone.description.input)
    spec.description.output.extend(head.description.output)
    spec.description.predictedFeatureName = head.description.predictedFeatureName
    spec.description.predictedProbabilitiesName = head.description.predictedProbabilitiesName
    return spec


def pipeline_spec(backbone: Any, head: Any) -> Any:
    """A Core ML pipeline classifier: backbone (``image`` -> ``embedding``) then head."""
    spec = _classifier_shell(backbone, head)
    spec.pipelineClassifier.pipeline.models.add().CopyFrom(backbone)
    spec.pipelineClassifier.pipeline.models.add().CopyFrom(head)
    return spec


def convert_backbone_program(net: FaceEmbeddingNet, package: Path) -> None:
    """The embedding network as an fp16 ML Program saved to ``package`` (done once per backbone)."""
    _check_layout(net)
    ct = coremltools()
    model = ct.convert(
        trace(net.eval(), _examples()),
        inputs=image_inputs(),
        outputs=[ct.TensorType(name=EMBEDDING)],
        convert_to="mlprogram",
        minimum_deployment_target=getattr(ct.target, ML_PROGRAM_TARGET),
        compute_precision=ct.precision.FLOAT16,
        skip_model_load=True,
    )
    try:
        model.save(str(package))
    finally:
        _remove_temporary_package(model)


def _remove_temporary_package(model: Any) -> None:
    """ct.convert writes an ML Program to a temporary .mlpackage that coremltools deletes only when
    the process exits: a long-running worker would leak one per version."""
    if getattr(model, "is_temp_package", False) and model.package_path:
        shutil.rmtree(model.package_path, ignore_errors=True)


@contextmanager
def head_program(
    weights: npt.NDArray[np.float32], bias: npt.NDArray[np.float32], labels: list[str]
) -> Iterator[Any]:
    """The head as an fp16 ML Program classifier: ``embedding`` -> ``classLabel`` / ``classLabelProbs``.

    Yields an ``MLModel`` (spec plus its weights directory) for ``fused_program_spec``; its temporary
    package is deleted when the block ends.
    """
    import torch

    ct = coremltools()
    model = ct.convert(
        trace(_linear_softmax(weights, bias), (torch.zeros(1, weights.shape[0]),)),
        inputs=[ct.TensorType(name=EMBEDDING, shape=(1, weights.shape[0]))],
        classifier_config=ct.ClassifierConfig(labels, predicted_feature_name=CLASS_LABEL),
        convert_to="mlprogram",
        minimum_deployment_target=getattr(ct.target, ML_PROGRAM_TARGET),
        compute_precision=ct.precision.FLOAT16,
        skip_model_load=True,
    )
    try:
        yield model
    finally:
        _remove_temporary_package(model)


def fused_program_spec(backbone: Any, head: Any, head_weights_dir: Path) -> Any:
    """The backbone program with the head's operations appended to its ``embedding``.

    The head's weights move inline (they are small), so the fused program reads exactly the
    backbone's weight file: one ``weight.bin`` for every version.
    """
    ct = coremltools()
    from coremltools.libmilstoragepython import _BlobStorageReader

    spec = ct.proto.Model_pb2.Model()
    spec.CopyFrom(backbone)
    block = _main_block(spec)
    head_function = head.mlProgram.functions["main"]
    head_block = _main_block(head)
    (embedding,) = block.outputs
    (head_input,) = (value.name for value in head_function.inputs)
    renamed_outputs: dict[str, str] = {
        str(head.description.predictedFeatureName): CLASS_LABEL,
        str(head.description.predictedProbabilitiesName): CLASS_PROBABILITIES,
    }

    def rename(name: str) -> str:
        if name == head_input:
            return str(embedding)
        return renamed_outputs.get(name, HEAD_PREFIX + name)

    blobs: dict[str, Any] = {}
    for source in head_block.operations:
        operation = block.operations.add()
        operation.CopyFrom(source)
        for argument_list in operation.inputs.values():
            for argument in argument_list.arguments:
                if argument.name:
                    argument.name = rename(argument.name)
        for output in operation.outputs:
            output.name = rename(output.name)
        if "name" in operation.attributes:
            names = operation.attributes["name"].immediateValue.tensor.strings.values
            names[:] = [HEAD_PREFIX + names[0]]
        value = operation.attributes.get("val")
        if value is not None and value.HasField("blobFileValue"):
            blob = value.blobFileValue
            reader = blobs.setdefault(
                blob.fileName, _BlobStorageReader(str(_blob_path(head_weights_dir, blob)))
            )
            if value.type.tensorType.dataType != ct.proto.MIL_pb2.FLOAT16:
                raise ValueError("the head program's weights are not fp16")
            # The reader hands back fp16 values as their raw 16-bit patterns: keep the bits.
            bits = np.asarray(reader.read_fp16_data(blob.offset), np.uint16)
            value.ClearField("blobFileValue")
            value.immediateValue.tensor.bytes.values = bits.astype("<u2").tobytes()
    block.outputs[:] = [rename(name) for name in head_block.outputs]

    del spec.description.output[:]
    for feature in head.description.output:
        output = spec.description.output.add()
        output.CopyFrom(feature)
        output.name = renamed_outputs.get(feature.name, feature.name)
    spec.description.predictedFeatureName = CLASS_LABEL
    spec.description.predictedProbabilitiesName = CLASS_PROBABILITIES
    return spec


def ml_program_package(spec: Any, backbone_package: Path) -> bytes:
    """``model.mlpackage`` zipped: ``spec`` beside the backbone package's manifest and weight file."""
    files = {
        "Manifest.json": (backbone_package / "Manifest.json").read_bytes(),
        "Data/com.apple.CoreML/model.mlmodel": serialize(spec),
    }
    weights = sorted(
        path
        for path in (backbone_package / "Data/com.apple.CoreML/weights").iterdir()
        if path.suffix == ".bin"
    )
    for weight in weights:
        files[f"Data/com.apple.CoreML/weights/{weight.name}"] = weight.read_bytes()
    return zip_files(
        "model.mlpackage", files, stored=tuple(f"Data/com.apple.CoreML/weights/{w.name}" for w in weights)
    )


def trace(module: torch.nn.Module, examples: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
    """TorchScript trace: the coremltools front end we rely on (its torch.export path is newer)."""
    import torch

    traced: torch.jit.ScriptModule = torch.jit.trace(module, examples)  # type: ignore[no-untyped-call]
    return traced


def _main_block(spec: Any) -> Any:
    function = spec.mlProgram.functions["main"]
    return function.block_specializations[function.opset]


def _blob_path(weights_dir: Path, blob: Any) -> Path:
    # Blob file names are written as "@model_path/weights/weight.bin".
    return weights_dir / Path(blob.fileName).name


def _linear_softmax(weights: npt.NDArray[np.float32], bias: npt.NDArray[np.float32]) -> torch.nn.Module:
    import torch

    layer = torch.nn.Linear(weights.shape[0], weights.shape[1])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weights.T))
        layer.bias.copy_(torch.from_numpy(bias))
    return torch.nn.Sequential(layer, torch.nn.Softmax(dim=1)).eval()


def zip_files(root: str, files: dict[str, bytes], *, stored: tuple[str, ...] = ()) -> bytes:
    """A zip holding ``files`` under the top-level directory ``root`` (sorted, fixed dates: reproducible).

    Names in ``stored`` are not compressed: fp16 weights shrink by only ~7 % and deflating 45 MB
    costs a second per version.
    """
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in sorted(files):
            entry = zipfile.ZipInfo(f"{root}/{name}", (1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            bundle.writestr(entry, files[name])
    return archive.getvalue()


def describe(spec: Any, summary: str) -> Any:
    """Our metadata on a spec; the converter's conversion date goes, so re-exports are byte-identical."""
    metadata = spec.description.metadata
    metadata.author = "faceforge"
    metadata.shortDescription = summary
    metadata.userDefined.pop(CONVERSION_DATE_KEY, None)
    return spec


def serialize(spec: Any) -> bytes:
    """Deterministic bytes (map fields sorted), so the same version always gets the same checksum."""
    data: bytes = spec.SerializeToString(deterministic=True)
    return data


def load_spec(data: bytes) -> Any:
    spec = coremltools().proto.Model_pb2.Model()
    spec.ParseFromString(data)
    return spec
