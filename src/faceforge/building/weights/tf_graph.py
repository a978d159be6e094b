"""Read the constants of a frozen TensorFlow GraphDef without TensorFlow.

The GraphDef is parsed by ``protobuf`` alone (a dependency of ONNX and ONNX Runtime already), with
message classes built at run time from the few fields of TensorFlow's ``.proto`` files that a
constant's value needs; every other field is skipped as unknown. The field numbers are TensorFlow's
(``graph.proto``, ``node_def.proto``, ``attr_value.proto``, ``tensor.proto``, ``tensor_shape.proto``)
and have been stable since TensorFlow 1.0. Only ``Const`` nodes are decoded, into NumPy arrays keyed
by node name.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# DataType enum values from TensorFlow's types.proto that frozen inference graphs use.
_DTYPES: dict[int, type[np.generic]] = {1: np.float32, 3: np.int32, 9: np.int64}

# (message, [(field name, number, type, label, message type)]): the subset of TensorFlow's protos we
# read. Types and labels are ``FieldDescriptorProto``'s: 9 string, 12 bytes, 11 message, 5 int32,
# 3 int64, 2 float, 14 enum read as int32 (5); label 1 optional, 3 repeated.
_PACKAGE = "faceforge_tf_subset"
_MESSAGES: list[tuple[str, list[tuple[str, int, int, int, str]]]] = [
    ("Dim", [("size", 1, 3, 1, "")]),
    ("TensorShapeProto", [("dim", 2, 11, 3, "Dim")]),
    (
        "TensorProto",
        [
            ("dtype", 1, 5, 1, ""),
            ("tensor_shape", 2, 11, 1, "TensorShapeProto"),
            ("tensor_content", 4, 12, 1, ""),
            ("float_val", 5, 2, 3, ""),
            ("int_val", 7, 5, 3, ""),
            ("int64_val", 10, 3, 3, ""),
        ],
    ),
    ("AttrValue", [("tensor", 8, 11, 1, "TensorProto")]),
    ("AttrEntry", [("key", 1, 9, 1, ""), ("value", 2, 11, 1, "AttrValue")]),
    ("NodeDef", [("name", 1, 9, 1, ""), ("op", 2, 9, 1, ""), ("attr", 5, 11, 3, "AttrEntry")]),
    ("GraphDef", [("node", 1, 11, 3, "NodeDef")]),
]


@cache
def _graph_def_class() -> Any:
    """The ``GraphDef`` message class of the subset above (built once per process)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto3")
    for name, fields in _MESSAGES:
        message = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = message.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
            if label == 3 and kind in (2, 3, 5):
                field.options.packed = True  # proto3's default; TensorFlow writes them packed
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.GraphDef"))


def read_graph_constants(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Return every ``Const`` node of the GraphDef at ``path`` as ``{node name: array}``.

    Scalars and splat constants (one ``float_val`` filling a larger shape) are expanded to their
    declared shape. Constants of other dtypes (strings, booleans) are skipped.
    """
    graph = _graph_def_class()()
    graph.ParseFromString(path.read_bytes())
    constants: dict[str, npt.NDArray[np.generic]] = {}
    for node in graph.node:
        if node.op != "Const":
            continue
        # ``attr`` is a map in TensorFlow's proto: the same bytes as repeated key/value entries (the
        # last of a repeated key wins, as in a map).
        attrs = {entry.key: entry.value for entry in node.attr}
        if "value" not in attrs:
            continue
        tensor = attrs["value"].tensor
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
