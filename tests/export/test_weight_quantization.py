"""Int8 weight storage (the browser's backbone): a quarter of the bytes, float32 arithmetic, close answers."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from faceforge.building.export.weight_quantization import int8_weights


def _graph() -> onnx.ModelProto:
    """Conv (64 channels of very different magnitude) -> flatten -> MatMul (a tiny bias stays float)."""
    random = np.random.default_rng(0)
    magnitudes = np.logspace(-3, 1, 64)[:, None, None, None]
    conv = (random.normal(size=(64, 3, 3, 3)) * magnitudes).astype(np.float32)
    dense = random.normal(size=(64 * 6 * 6, 64)).astype(np.float32)
    bias = random.normal(size=(64,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["c"]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("MatMul", ["f", "dense_w"], ["m"]),
        helper.make_node("Add", ["m", "bias"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [numpy_helper.from_array(a, n) for a, n in ((conv, "conv_w"), (dense, "dense_w"), (bias, "bias"))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_int8_weights_answer_as_the_float_graph() -> None:
    model = _graph()
    quantized = int8_weights(model)
    onnx.checker.check_model(quantized)
    kinds = {init.name: init.data_type for init in quantized.graph.initializer}
    assert kinds["conv_w_int8"] == kinds["dense_w_int8"] == TensorProto.INT8
    assert kinds["bias"] == TensorProto.FLOAT and "conv_w" not in kinds  # small tensors stay float
    assert len(quantized.SerializeToString()) < 0.3 * len(model.SerializeToString())

    x = {"x": np.random.default_rng(1).uniform(0, 1, (1, 3, 8, 8)).astype(np.float32)}
    expected = ort.InferenceSession(model.SerializeToString()).run(None, x)[0]
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    answer = ort.InferenceSession(quantized.SerializeToString(), options).run(None, x)[0]
    # Per-channel scales: the smallest channel keeps its precision beside the largest.
    cosine = float((expected * answer).sum() / np.linalg.norm(expected) / np.linalg.norm(answer))
    assert cosine > 0.9999, cosine
    assert int8_weights(model).SerializeToString() == quantized.SerializeToString()  # deterministic
