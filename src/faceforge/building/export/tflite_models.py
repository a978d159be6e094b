"""TFLite files for a version: backbone converted once, head written directly, fused by graph surgery.

Converting the embedding network with litert-torch takes seconds to minutes, so it happens once per
backbone (cached). Each version's head is two operators -- ``FULLY_CONNECTED`` (``E @ W + b``, the
unknown column last) and ``SOFTMAX`` -- written straight into the TFLite flatbuffer schema, and the
fused model is the backbone's graph with those two operators appended to its embedding output.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from typing import TYPE_CHECKING, Any

import flatbuffers
import numpy as np
import numpy.typing as npt
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from faceforge.building.export.model_inputs import MODEL_INPUTS
from faceforge.building.export.quiet import quiet_conversion_tools
from faceforge.core.errors import ExportError
from faceforge.core.interrupts import import_held
from faceforge.core.native_logs import native_chatter_filtered

if TYPE_CHECKING:  # PyTorch is imported where a network is converted, not where models are composed
    from faceforge.building.networks.embedding_net import FaceEmbeddingNet

log = logging.getLogger(__name__)

SIGNATURE_KEY = "serving_default"
INPUT_NAMES = [spec.name for spec in MODEL_INPUTS]
EMBEDDING = "embedding"
PROBABILITIES = "probabilities"
# Builtin operator versions the head needs: plain float32 FULLY_CONNECTED / SOFTMAX, supported by
# every TFLite runtime since 1.x.
FULLY_CONNECTED_VERSION = 1
SOFTMAX_VERSION = 1
TFLITE_FILE_IDENTIFIER = b"TFL3"
# Room for the graph's tables (tensors, operators, names) beyond the weights: a few MB at most.
BUILDER_HEADROOM = 8 << 20


def convert_backbone(net: FaceEmbeddingNet) -> bytes:
    """``face`` ``(1, 160, 160, 3)`` and ``chip`` ``(1, 150, 150, 3)`` float32 RGB 0-255 ->
    ``embedding`` ``(1, 640)`` as a .tflite file."""
    quiet_conversion_tools()
    import_held("litert_torch", "torch")  # heavy (JAX, MLIR): only when a backbone is converted
    import litert_torch
    import torch

    quiet_conversion_tools()  # again: importing them resets the loggers' levels
    if not net.channels_last or not net.normalise_pixels or not net.stack_flip:
        raise ValueError("the TFLite backbone takes NHWC 0-255 pixels, flip stacked")
    examples = tuple(torch.zeros(1, spec.size, spec.size, 3) for spec in MODEL_INPUTS)
    edge_model = litert_torch.convert(net.eval(), examples)
    model = read_model(bytes(edge_model.model_content()))
    rename_signature(model, inputs=INPUT_NAMES, outputs=[EMBEDDING])
    return write_model(model)


def quantize_dynamic_int8(model: bytes) -> bytes:
    """Dynamic-range quantisation: int8 weights, float32 activations (ai-edge-quantizer)."""
    import_held("ai_edge_quantizer")
    from ai_edge_quantizer import quantizer, recipe

    engine = quantizer.Quantizer(model)
    engine.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    # One of its inner passes draws a tqdm bar that no option turns off: catch it (Python-level
    # stderr only, for this fraction of a second; log handlers keep their own stream).
    with contextlib.redirect_stderr(io.StringIO()):
        quantized = engine.quantize(enable_progress_bar=False, enable_progress_report=False)
    return bytes(quantized.quantized_model)


def read_model(data: bytes) -> Any:
    """A mutable ``ModelT``; buffers stored past the flatbuffer (by offset) are pulled inside."""
    model = flatbuffer_utils.read_model_from_bytearray(data)
    for buffer in model.buffers:
        # Packing a numpy array is one memcpy; packing bytes goes element by element.
        if buffer.data is not None and not isinstance(buffer.data, np.ndarray):
            buffer.data = np.frombuffer(bytes(buffer.data), np.uint8)
    return model


def write_model(model: Any) -> bytes:
    """The ``.tflite`` bytes of a ``ModelT``: what ``flatbuffer_utils.convert_object_to_bytearray``
    writes, with the builder sized for the weights up front (from 1 KB it doubled its buffer about
    17 times on the way to 100 MB, copying everything each time: a third of a version's TFLite time)."""
    weights = sum(buffer.data.nbytes for buffer in model.buffers if isinstance(buffer.data, np.ndarray))
    builder = flatbuffers.Builder(weights + BUILDER_HEADROOM)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def head_model(weights: npt.NDArray[np.float32], bias: npt.NDArray[np.float32]) -> Any:
    """``embedding`` ``(1, D)`` -> ``probabilities`` ``(1, C + 1)`` = ``softmax(E @ W + b)``."""
    dimension, classes = weights.shape
    buffers = [schema.BufferT(), _buffer(np.ascontiguousarray(weights.T)), _buffer(bias)]
    tensors = [
        _tensor(EMBEDDING, [1, dimension]),
        _tensor("head_weights", [classes, dimension], buffer=1),
        _tensor("head_bias", [classes], buffer=2),
        _tensor("logits", [1, classes]),
        _tensor(PROBABILITIES, [1, classes]),
    ]
    fully_connected = schema.OperatorT()
    fully_connected.opcodeIndex = 0
    fully_connected.inputs = [0, 1, 2]
    fully_connected.outputs = [3]
    fully_connected.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    fully_connected.builtinOptions = schema.FullyConnectedOptionsT()
    softmax = schema.OperatorT()
    softmax.opcodeIndex = 1
    softmax.inputs = [3]
    softmax.outputs = [4]
    softmax.builtinOptionsType = schema.BuiltinOptions.SoftmaxOptions
    softmax.builtinOptions = schema.SoftmaxOptionsT()
    softmax.builtinOptions.beta = 1.0

    subgraph = schema.SubGraphT()
    subgraph.name = "main"
    subgraph.tensors = tensors
    subgraph.inputs = [0]
    subgraph.outputs = [4]
    subgraph.operators = [fully_connected, softmax]

    model = schema.ModelT()
    model.version = 3
    model.description = "faceforge recognition head"
    model.operatorCodes = [
        _operator_code(schema.BuiltinOperator.FULLY_CONNECTED, FULLY_CONNECTED_VERSION),
        _operator_code(schema.BuiltinOperator.SOFTMAX, SOFTMAX_VERSION),
    ]
    model.subgraphs = [subgraph]
    model.buffers = buffers
    model.signatureDefs = [_signature([(EMBEDDING, 0)], [(PROBABILITIES, 4)])]
    return model


def fuse(backbone: Any, head: Any) -> Any:
    """The backbone's graph with the head's operators appended to its output: ``face`` and ``chip``
    -> ``probabilities``.

    ``backbone`` is left as it was (the fused model shares its weights, tensors and operators, and
    copies what it changes), so one parsed backbone serves every version; ``head`` is consumed.
    """
    if len(backbone.subgraphs) != 1 or len(head.subgraphs) != 1:
        raise ValueError("fusing expects single-graph models")
    model = copy.copy(backbone)
    graph = copy.copy(backbone.subgraphs[0])
    model.subgraphs = [graph]
    model.buffers = list(backbone.buffers)
    model.operatorCodes = list(backbone.operatorCodes)
    graph.tensors = list(graph.tensors)
    graph.operators = list(graph.operators)
    head_graph = head.subgraphs[0]
    (embedding_index,) = graph.outputs
    (head_input,) = head_graph.inputs
    for index in (*graph.inputs, embedding_index):  # renamed below: the backbone's stay as they are
        graph.tensors[index] = copy.copy(graph.tensors[index])

    buffer_offset = len(model.buffers)
    model.buffers.extend(head.buffers)
    tensor_index = {head_input: embedding_index}
    for index, tensor in enumerate(head_graph.tensors):
        if index == head_input:
            continue
        if tensor.buffer:
            tensor.buffer += buffer_offset
        tensor_index[index] = len(graph.tensors)
        graph.tensors.append(tensor)
    opcode_index = [_find_or_add_opcode(model, code) for code in head.operatorCodes]
    for operator in head_graph.operators:
        operator.opcodeIndex = opcode_index[operator.opcodeIndex]
        operator.inputs = [tensor_index[i] if i >= 0 else i for i in operator.inputs]
        operator.outputs = [tensor_index[i] for i in operator.outputs]
        graph.operators.append(operator)
    graph.outputs = [tensor_index[i] for i in head_graph.outputs]
    graph.tensors[embedding_index].name = EMBEDDING
    rename_signature(model, inputs=INPUT_NAMES, outputs=[PROBABILITIES], indices=graph.outputs)
    model.description = "faceforge recognition model"
    return model


def _find_or_add_opcode(model: Any, code: Any) -> int:
    wanted = flatbuffer_utils.get_builtin_code_from_operator_code(code)
    for index, existing in enumerate(model.operatorCodes):
        same_op = flatbuffer_utils.get_builtin_code_from_operator_code(existing) == wanted
        if same_op and existing.version == code.version and existing.customCode == code.customCode:
            return index
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def rename_signature(
    model: Any, *, inputs: list[str], outputs: list[str], indices: list[int] | None = None
) -> None:
    """One ``serving_default`` signature with our tensor names (apps look tensors up by these)."""
    graph = model.subgraphs[0]
    output_indices = graph.outputs if indices is None else indices
    model.signatureDefs = [
        _signature(
            list(zip(inputs, graph.inputs, strict=True)), list(zip(outputs, output_indices, strict=True))
        )
    ]
    for name, index in zip(inputs, graph.inputs, strict=True):
        graph.tensors[index].name = name
    for name, index in zip(outputs, output_indices, strict=True):
        graph.tensors[index].name = name


def _signature(inputs: list[tuple[str, int]], outputs: list[tuple[str, int]]) -> Any:
    signature = schema.SignatureDefT()
    signature.signatureKey = SIGNATURE_KEY
    signature.subgraphIndex = 0
    signature.inputs = [_tensor_map(name, index) for name, index in inputs]
    signature.outputs = [_tensor_map(name, index) for name, index in outputs]
    return signature


def _tensor_map(name: str, index: int) -> Any:
    mapping = schema.TensorMapT()
    mapping.name = name
    mapping.tensorIndex = index
    return mapping


def _tensor(name: str, shape: list[int], *, buffer: int = 0) -> Any:
    tensor = schema.TensorT()
    tensor.name = name
    tensor.shape = shape
    tensor.type = schema.TensorType.FLOAT32
    tensor.buffer = buffer
    return tensor


def _buffer(values: npt.NDArray[np.float32]) -> Any:
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.ascontiguousarray(values, dtype="<f4").tobytes(), np.uint8)
    return buffer


def _operator_code(builtin: int, version: int) -> Any:
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    # Old runtimes read the int8 field; codes above 127 store PLACEHOLDER_FOR_GREATER_OP_CODES there.
    code.deprecatedBuiltinCode = min(builtin, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    code.version = version
    return code


def run_tflite(
    model: bytes, batch: dict[str, npt.NDArray[np.float32]] | npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Run a TFLite model over ``batch`` one row at a time (the models take batch 1): a dict of NHWC
    arrays by input name, or one array for a single-input model (the head)."""
    with native_chatter_filtered():  # the runtime announces its XNNPACK delegate on stderr
        return _run_tflite(model, batch)


def _run_tflite(
    model: bytes, batch: dict[str, npt.NDArray[np.float32]] | npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=2)
    runner = interpreter.get_signature_runner(SIGNATURE_KEY)
    input_names = list(runner.get_input_details())
    (output_name,) = runner.get_output_details()
    inputs = batch if isinstance(batch, dict) else {input_names[0]: batch}
    if sorted(inputs) != sorted(input_names):
        raise ExportError(f"the TFLite model takes {input_names}, not {sorted(inputs)}")
    count = len(next(iter(inputs.values())))
    rows = [
        runner(**{name: inputs[name][i : i + 1] for name in input_names})[output_name] for i in range(count)
    ]
    return np.concatenate(rows).astype(np.float32)
