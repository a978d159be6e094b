"""The int8 embedding graph cut in three where FaceNet's two passes meet, so an API process can run
the upright and the mirrored pass on two cores at once (``serving.vision.embedder.FlipPassSession``).

The embedding network runs FaceNet on the crop and on its mirror image and adds the two
(``building.networks.embedding_net``). On one face that is 10 of the int8 graph's 11 ms, and ONNX
Runtime keeps it on one core: the convolutions of a single face are too small to share out (measured:
two intra-op threads 11.6 ms against one 12.5 ms), and its parallel executor did not run the two
branches side by side. Cut at the join, the parts run on two threads in 6.7 ms, bit for bit the
same embedding: the cut falls on the passes' quantised outputs, so every part keeps the
quantise/dequantise pairs its kernels fuse, and nothing is computed twice but the pixel scaling.

The join is found in the graph, not by name: it is the Add whose two inputs are computed from the
photo by the most nodes that the other input does not also use (a residual Add inside FaceNet has one
input that is a short branch of the other; the two passes share only the pixel scaling).
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx.utils import Extractor

from faceforge.core.atomic import write_atomically
from faceforge.core.errors import WeightsUnavailableError
from faceforge.serving.vision.embedder import flip_part_paths

# Each FaceNet pass is some 600 nodes of the int8 graph; a residual branch a few dozen.
MIN_PASS_NODES = 200


def _flip_join(graph: onnx.GraphProto) -> onnx.NodeProto:
    producer = {output: node for node in graph.node for output in node.output}
    computed = {value.name for value in graph.input}  # tensors that depend on a photo
    for node in graph.node:  # ONNX lists nodes in topological order
        if any(name in computed for name in node.input):
            computed.update(node.output)

    def cone(tensor: str) -> set[int]:
        """The nodes that compute ``tensor`` from the photo (constants and weights left out)."""
        seen: set[int] = set()
        stack = [tensor]
        while stack:
            name = stack.pop()
            node = producer.get(name)
            if node is None or name not in computed or id(node) in seen:
                continue
            seen.add(id(node))
            stack.extend(node.input)
        return seen

    best: tuple[int, onnx.NodeProto] | None = None
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        first, second = cone(node.input[0]), cone(node.input[1])
        own = min(len(first - second), len(second - first))
        if best is None or own > best[0]:
            best = (own, node)
    if best is None or best[0] < MIN_PASS_NODES:
        raise WeightsUnavailableError("the embedding graph has no join of two FaceNet passes to cut at")
    return best[1]


def _cut_tensor(graph: onnx.GraphProto, tensor: str) -> str:
    """Where to cut an input of the join: before its dequantisation, if it has one, so the part that
    reads it dequantises it as the whole graph does."""
    for node in graph.node:
        if tensor in node.output and node.op_type == "DequantizeLinear":
            return str(node.input[0])
    return tensor


def _part(extractor: Extractor, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
    model: onnx.ModelProto = extractor.extract_model(inputs, outputs)
    used = {name for node in model.graph.node for name in node.input}
    needed = [value for value in model.graph.input if value.name in used]
    del model.graph.input[:]
    model.graph.input.extend(needed)  # a part is fed only what it reads
    return model


def split_flip_passes(graph_path: Path, parts_of: Path | None = None) -> None:
    """Write the three parts of the graph at ``graph_path`` beside ``parts_of`` (default: the graph
    itself; a graph still being written passes its final path), as ``flip_part_paths`` names them:
    ``face`` -> one pass, ``face`` -> the other, and both passes' outputs (+ ``chip``) -> the
    embedding. ``WeightsUnavailableError`` if the graph has no such join."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(graph_path)))
    join = _flip_join(model.graph)
    cuts = [_cut_tensor(model.graph, name) for name in join.input]
    photo_inputs = [value.name for value in model.graph.input]
    outputs = [value.name for value in model.graph.output]
    extractor = Extractor(model)
    face = [name for name in photo_inputs if name == "face"]
    parts = (
        _part(extractor, face, [cuts[0]]),
        _part(extractor, face, [cuts[1]]),
        _part(extractor, [*cuts, *photo_inputs], outputs),
    )
    for part, path in zip(parts, flip_part_paths(parts_of or graph_path), strict=True):
        _save(part, path)


def _save(model: onnx.ModelProto, path: Path) -> None:
    write_atomically(path, lambda temp: onnx.save(model, str(temp)))
