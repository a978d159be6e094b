"""Spec checks for the Core ML files (Core ML cannot run on Linux, so we verify what we can read).

``classifier_problems`` lists everything wrong with a classifier spec -- NeuralNetwork classifier,
pipeline classifier or ML Program -- against what an app relies on: the ``face`` and ``chip`` image
inputs (sizes, RGB, each one's scale and bias as preprocessing: ``building.export.model_inputs``),
``classLabel`` / ``classLabelProbs``
outputs, labels in order, fp16 weights, and every layer, operation or pipeline stage wired to
something that exists. An empty list means the file is what we promise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from faceforge.building.export.coreml_models import CLASS_LABEL, CLASS_PROBABILITIES, FLOAT16_LAYERS
from faceforge.building.export.model_inputs import MODEL_INPUTS

INPUT_NAMES = [spec.name for spec in MODEL_INPUTS]


def classifier_problems(spec: Any, labels: list[str]) -> list[str]:
    problems = _description_problems(spec)
    kind = spec.WhichOneof("Type")
    if kind == "neuralNetworkClassifier":
        network = spec.neuralNetworkClassifier
        problems += _preprocessing_problems(network.preprocessing)
        problems += _network_problems(network.layers, inputs=set(INPUT_NAMES), outputs=[])
        if network.labelProbabilityLayerName not in _produced(network.layers):
            problems.append(f"probability layer {network.labelProbabilityLayerName!r} is not produced")
        problems += _label_problems(list(network.stringClassLabels.vector), labels)
    elif kind == "pipelineClassifier":
        problems += _pipeline_problems(spec.pipelineClassifier.pipeline.models, spec, labels)
    elif kind == "mlProgram":
        problems += _program_problems(spec, labels)
    else:
        problems.append(f"expected a classifier, got a {kind} model")
    return problems


def float16_problems(layers: Iterable[Any]) -> list[str]:
    """Weight-bearing layers whose weights are still stored as float32."""
    problems = []
    for layer in layers:
        kind = layer.WhichOneof("layer")
        if kind in FLOAT16_LAYERS and _has_float32_weights(getattr(layer, kind)):
            problems.append(f"layer {layer.name!r} ({kind}) stores float32 weights")
    return problems


def _has_float32_weights(message: Any) -> bool:
    for field, value in message.ListFields():
        if field.message_type is None or field.is_repeated:
            continue
        if field.message_type.name == "WeightParams":
            if len(value.floatValue):
                return True
        elif _has_float32_weights(value):
            return True
    return False


def _description_problems(spec: Any) -> list[str]:
    description = spec.description
    problems = []
    inputs = list(description.input)
    if [feature.name for feature in inputs] != INPUT_NAMES:
        problems.append(f"inputs are {[f.name for f in inputs]}, expected {INPUT_NAMES}")
    else:
        for feature, expected in zip(inputs, MODEL_INPUTS, strict=True):
            image = feature.type
            if image.WhichOneof("Type") != "imageType":
                problems.append(f"input {feature.name!r} is not an image")
                continue
            if (image.imageType.width, image.imageType.height) != (expected.size, expected.size):
                problems.append(f"{feature.name} is {image.imageType.width}x{image.imageType.height}")
            if image.imageType.colorSpace != image.imageType.RGB:
                problems.append(f"{feature.name} colour space is not RGB")
    outputs = {feature.name: feature.type.WhichOneof("Type") for feature in description.output}
    if outputs.get(CLASS_LABEL) != "stringType":
        problems.append(f"no string output {CLASS_LABEL!r}")
    if outputs.get(CLASS_PROBABILITIES) != "dictionaryType":
        problems.append(f"no dictionary output {CLASS_PROBABILITIES!r}")
    if description.predictedFeatureName != CLASS_LABEL:
        problems.append(f"predicted feature is {description.predictedFeatureName!r}")
    if description.predictedProbabilitiesName != CLASS_PROBABILITIES:
        problems.append(f"predicted probabilities are {description.predictedProbabilitiesName!r}")
    return problems


def _preprocessing_problems(preprocessing: Iterable[Any]) -> list[str]:
    preprocessing = list(preprocessing)
    problems = []
    for expected in MODEL_INPUTS:
        scalers = [p.scaler for p in preprocessing if p.featureName == expected.name and p.HasField("scaler")]
        if len(scalers) != 1:
            problems.append(f"no scaling preprocessing for {expected.name}")
            continue
        scaler = scalers[0]
        if not math.isclose(scaler.channelScale, expected.scale, rel_tol=1e-6):
            problems.append(f"{expected.name} scale is {scaler.channelScale}, expected {expected.scale}")
        biases = (scaler.redBias, scaler.greenBias, scaler.blueBias)
        if not all(math.isclose(b, e, rel_tol=1e-6) for b, e in zip(biases, expected.bias, strict=True)):
            problems.append(f"{expected.name} bias is {biases}, expected {expected.bias}")
    return problems


def _produced(layers: Iterable[Any]) -> set[str]:
    return {name for layer in layers for name in layer.output}


def _network_problems(layers: Iterable[Any], *, inputs: set[str], outputs: list[str]) -> list[str]:
    problems = float16_problems(layers)
    available = set(inputs)
    for layer in layers:
        missing = [name for name in layer.input if name not in available]
        if missing:
            problems.append(f"layer {layer.name!r} reads {missing}, which nothing produced before it")
        available.update(layer.output)
    problems += [f"output {name!r} is not produced" for name in outputs if name not in available]
    return problems


def _label_problems(actual: list[str], expected: list[str]) -> list[str]:
    if actual != expected:
        return [
            f"class labels are {actual[:3]}... ({len(actual)}), expected {expected[:3]}... ({len(expected)})"
        ]
    return []


def _pipeline_problems(models: Iterable[Any], pipeline: Any, labels: list[str]) -> list[str]:
    problems = []
    models = list(models)
    available = {feature.name for feature in pipeline.description.input}
    for index, model in enumerate(models):
        needed = [feature.name for feature in model.description.input]
        missing = [name for name in needed if name not in available]
        if missing:
            problems.append(f"pipeline stage {index} needs {missing}, which no earlier stage provides")
        available.update(feature.name for feature in model.description.output)
        kind = model.WhichOneof("Type")
        if kind == "neuralNetwork":
            network = model.neuralNetwork
        elif kind == "neuralNetworkClassifier":
            network = model.neuralNetworkClassifier
        else:
            problems.append(f"pipeline stage {index} is a {kind} model")
            continue
        stage_outputs = [feature.name for feature in model.description.output]
        if kind == "neuralNetworkClassifier":
            stage_outputs = [network.labelProbabilityLayerName]
        problems += [
            f"stage {index}: {p}"
            for p in _network_problems(network.layers, inputs=set(needed), outputs=stage_outputs)
        ]
        if index == 0:
            problems += _preprocessing_problems(network.preprocessing)
    for feature in pipeline.description.output:
        if feature.name not in available:
            problems.append(f"pipeline output {feature.name!r} is produced by no stage")
    if models and models[-1].WhichOneof("Type") == "neuralNetworkClassifier":
        problems += _label_problems(list(models[-1].neuralNetworkClassifier.stringClassLabels.vector), labels)
    else:
        problems.append("the pipeline's last stage is not a classifier")
    return problems


def _program_problems(spec: Any, labels: list[str]) -> list[str]:
    from coremltools.proto import MIL_pb2

    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    problems = []
    constants: dict[str, Any] = {}
    available = {value.name for value in function.inputs}
    classes: list[str] | None = None
    for operation in block.operations:
        for argument_list in operation.inputs.values():
            for argument in argument_list.arguments:
                if argument.name and argument.name not in available:
                    problems.append(
                        f"{operation.type} reads {argument.name!r}, which nothing produced before it"
                    )
        available.update(output.name for output in operation.outputs)
        if operation.type == "const":
            value = operation.attributes["val"]
            constants[operation.outputs[0].name] = value
            is_blob = value.HasField("blobFileValue")
            if is_blob and value.type.tensorType.dataType != MIL_pb2.FLOAT16:
                problems.append(f"weight {operation.outputs[0].name!r} is not fp16")
        if operation.type == "classify":
            entries = operation.inputs["classes"].arguments[0].value.immediateValue.list.values
            classes = [str(entry.immediateValue.tensor.strings.values[0]) for entry in entries]
    problems += [
        f"program output {name!r} is not produced" for name in block.outputs if name not in available
    ]
    if classes is None:
        problems.append("the program has no classify operation")
    else:
        problems += _label_problems(classes, labels)
    problems += _program_preprocessing_problems(block, constants)
    return problems


def _program_preprocessing_problems(block: Any, constants: dict[str, Any]) -> list[str]:
    """The converter writes each image's scale and bias as ``mul`` / ``add`` on the image input."""
    problems = []
    for expected in MODEL_INPUTS:
        scale = bias = None
        for operation in block.operations:
            names = {key: [a.name for a in value.arguments] for key, value in operation.inputs.items()}
            if operation.type == "mul" and names.get("x") == [expected.name]:
                scale = _constant_values(constants.get(names["y"][0]))
                scaled = operation.outputs[0].name
                for follower in block.operations:
                    follower_x = (
                        [a.name for a in follower.inputs["x"].arguments] if "x" in follower.inputs else []
                    )
                    if follower.type == "add" and follower_x == [scaled]:
                        bias = _constant_values(constants.get(follower.inputs["y"].arguments[0].name))
        if scale is None or not np.allclose(scale, expected.scale, rtol=1e-6):
            problems.append(f"{expected.name} scale is {scale}, expected {expected.scale}")
        elif bias is None or not np.allclose(bias.ravel(), expected.bias, rtol=1e-6):
            problems.append(f"{expected.name} bias is {bias}, expected {expected.bias}")
    return problems


def _constant_values(value: Any) -> Any:
    if value is None or not value.HasField("immediateValue"):
        return None
    return np.asarray(value.immediateValue.tensor.floats.values, np.float32)
