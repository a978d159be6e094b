"""Read the constants of a frozen TensorFlow GraphDef without TensorFlow.

The GraphDef protobuf is parsed with the compiled protos that ship in ``tensorboard``; only ``Const``
nodes are decoded, into NumPy arrays keyed by node name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

# DataType enum values from TensorFlow's types.proto that frozen inference graphs use.
_DTYPES: dict[int, type[np.generic]] = {1: np.float32, 3: np.int32, 9: np.int64}


def read_graph_constants(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Return every ``Const`` node of the GraphDef at ``path`` as ``{node name: array}``.

    Scalars and splat constants (one ``float_val`` filling a larger shape) are expanded to their
    declared shape. Constants of other dtypes (strings, booleans) are skipped.
    """
    from tensorboard.compat.proto import graph_pb2  # heavy import, only needed while converting

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(path.read_bytes())
    constants: dict[str, npt.NDArray[np.generic]] = {}
    for node in graph.node:
        if node.op != "Const":
            continue
        tensor = node.attr["value"].tensor
        dtype = _DTYPES.get(tensor.dtype)
        if dtype is None:
            continue
        shape = tuple(dim.size for dim in tensor.tensor_shape.dim)
        if tensor.tensor_content:
            array = np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape)
        else:
            values = np.asarray(
                tensor.float_val if dtype is np.float32 else (tensor.int_val or tensor.int64_val), dtype=dtype
            )
            if values.size == 1:
                array = np.broadcast_to(values.reshape(()), shape)
            elif values.size == int(np.prod(shape)):
                array = values.reshape(shape)
            else:
                continue  # an empty or malformed constant no weight of ours comes from
        constants[node.name] = np.array(array)  # own the memory: the protobuf buffer is freed
    return constants
