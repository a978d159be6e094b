"""ONNX files for a model version: the shared backbone, a per-version head, and the fused model.

- backbone: ``face`` ``(N, 3, 160, 160)`` and ``chip`` ``(N, 3, 150, 150)`` float32 RGB 0-255
  (``building.export.model_inputs``) -> ``embedding`` ``(N, 640)`` unit vectors. It is the server's own
  embedding graph (exported once from our PyTorch module) and is identical for every version, so
  apps download it once (same sha256).
- head: ``embedding`` -> ``probabilities`` ``(N, C + 1)``: ``softmax(E @ W + b)`` where the first C
  columns of ``W`` are ``scale`` x the class prototypes with biases ``-scale x margin`` (each person's
  margin, usually 0), and the last column is zero with bias ``scale x threshold`` -- the unknown
  decision baked in: argmax is "unknown" exactly when no class's similarity less its margin reaches
  the threshold.
- fused: backbone and head composed into one graph, ``face`` and ``chip`` -> ``probabilities``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from faceforge.core.model.head import RecognitionHead

OPSET = 18
HEAD_PREFIX = "head_"
PROBABILITIES = "probabilities"


def head_affine(head: RecognitionHead) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``(W, b)`` with ``W`` of shape ``(D, C + 1)``: logits = ``E @ W + b``, unknown last."""
    classes, dimension = head.prototypes.shape
    weights = np.zeros((dimension, classes + 1), np.float32)
    weights[:, :classes] = head.scale * head.prototypes.T
    bias = np.zeros(classes + 1, np.float32)
    bias[:classes] = -head.scale * head.margins
    bias[classes] = head.scale * head.threshold
    return weights, bias


def head_model(
    head: RecognitionHead, *, opset: int = OPSET, ir_version: int | None = None
) -> onnx.ModelProto:
    weights, bias = head_affine(head)
    classes = weights.shape[1]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["embedding", "head_weights"], ["head_scores"]),
            helper.make_node("Add", ["head_scores", "head_bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "faceforge_head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", weights.shape[0]])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        initializer=[
            numpy_helper.from_array(weights, "head_weights"),
            numpy_helper.from_array(bias, "head_bias"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="faceforge"
    )
    if ir_version is not None:  # composing with the backbone needs the same IR version
        model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def fused_model(backbone: onnx.ModelProto, head: onnx.ModelProto) -> onnx.ModelProto:
    """``face`` and ``chip`` -> ``probabilities``: the backbone's graph with the head's nodes appended
    to its ``embedding`` output (the head's other names prefixed, so none can clash).

    Composed by hand rather than with ``onnx.compose.merge_models``, which checks and serialises both
    100 MB models twice (0.4 s of every version); both parts are checked where they are made, and
    the fused file is held to backbone + head by ONNX Runtime before a version is published.
    """
    if opset_of(head) != opset_of(backbone) or head.ir_version != backbone.ir_version:
        raise ValueError("the head must be made for the backbone's opset and IR version")
    (embedding,) = (value.name for value in backbone.graph.output)
    (head_input,) = (value.name for value in head.graph.input)
    (head_output,) = (value.name for value in head.graph.output)
    names = {head_input: embedding, head_output: PROBABILITIES}

    def renamed(name: str) -> str:
        return str(names.get(name, f"{HEAD_PREFIX}{name}" if name else name))

    fused = onnx.ModelProto()
    fused.CopyFrom(backbone)
    fused.producer_name = "faceforge"
    graph = fused.graph
    for source in head.graph.node:
        node = graph.node.add()
        node.CopyFrom(source)
        node.name = renamed(source.name)
        node.input[:] = [renamed(name) for name in source.input]
        node.output[:] = [renamed(name) for name in source.output]
    for tensor in head.graph.initializer:
        initializer = graph.initializer.add()
        initializer.CopyFrom(tensor)
        initializer.name = renamed(tensor.name)
    del graph.output[:]
    output = graph.output.add()
    output.CopyFrom(head.graph.output[0])
    output.name = PROBABILITIES
    return fused


def opset_of(model: onnx.ModelProto) -> int:
    return int(next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")))
