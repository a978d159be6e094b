"""MTCNN's graphs as the server runs them: every PRelu written as operations ONNX Runtime runs faster.

ONNX Runtime runs PRelu as a broadcast outside its blocked convolution layout, and it was a third of
each network's time (its profiler, on this project's photos). Per channel ``c``, with ``r = Relu(x)``:

    PRelu(x) = r + slope_c * (x - r)

where ``x - r`` is ``Add(x, -1 * r)`` and both products are 1x1 depthwise convolutions, all of which
ONNX Runtime keeps in its blocked layout on x86. R-Net on one photo's 71 candidates took 2.1 ms
instead of 4.2 on two threads, O-Net on 9 candidates 1.6 instead of 2.8, P-Net's largest level 1.3
instead of 2.2 on one thread (an AMD EPYC with AVX-512; ``bench.detector_graphs``). Any other PRelu
(after a dense layer) becomes ``Relu(x) + Min(x, 0) * slope``.

The numbers are the same for finite inputs, up to the sign of a zero: each step is one product or one
sum with a zero term, which IEEE arithmetic computes exactly or with the one rounding PRelu makes too
(for ``x > 0``: ``x - x`` is 0 and ``x + slope * 0`` is ``x``; for ``x < 0``: ``x - 0`` is ``x`` and
``0 + slope * x`` is the product PRelu rounds). MTCNN's inputs are normalised pixels, always finite.
``write_split_graph`` checks the numbers, and that the split graph is faster, where it writes it (the
machine that runs ``faceforge prepare``, or an API process's child); a test holds every box, score
and landmark equal on real photos. The files the device bundles ship (``detector_pnet.onnx``...) stay
the package's own.

``python -m faceforge.building.networks.detector_graphs SOURCE TARGET`` writes one graph (what
``serving.vision.mtcnn.prepare_split_graphs`` runs in a process that must not import ONNX itself).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NoReturn

import numpy as np
import numpy.typing as npt
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from faceforge.core.atomic import write_bytes_atomically
from faceforge.core.checksums import write_with_checksum
from faceforge.core.errors import WeightsUnavailableError
from faceforge.core.parent_watch import stop_when_orphaned_from_environment
from faceforge.serving.vision.mtcnn import refusal_path
from faceforge.serving.vision.runtime import OnnxSession

# The check's batches: the candidates a crowded photo gives R-Net and O-Net, and P-Net's largest level.
CHECK_BATCH = 64
CHECK_SIDE = 150
TIMED_RUNS = 5  # the best of these, twice, for each graph: the split ones took 0.55-0.75 of the time


def split_prelu(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with each PRelu node replaced as the module says (same outputs)."""
    split = onnx.ModelProto()
    split.CopyFrom(model)
    slopes = {init.name: numpy_helper.to_array(init) for init in split.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    for node in split.graph.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        (x, slope_name), (y,) = node.input, node.output
        name = node.name or y
        slope = slopes.get(slope_name, np.zeros(0, np.float32))  # a computed slope: the plain form
        positive, negative, scaled = f"{name}_positive", f"{name}_negative", f"{name}_scaled"
        if slope.ndim == 4 and slope.shape[0] == 1 and slope.shape[1] > 1 and slope.shape[2:] == (1, 1):
            channels = slope.shape[1]
            minus, per_channel = f"{name}_minus_one", f"{name}_slope_1x1"
            added.append(numpy_helper.from_array(np.full((channels, 1, 1, 1), -1.0, np.float32), minus))
            added.append(
                numpy_helper.from_array(slope.reshape(channels, 1, 1, 1).astype(np.float32), per_channel)
            )

            def depthwise(source: str, weight: str, out: str, channels: int = channels) -> onnx.NodeProto:
                return helper.make_node(
                    "Conv", [source, weight], [out], name=f"{out}_conv", group=channels, kernel_shape=[1, 1]
                )

            nodes += [
                helper.make_node("Relu", [x], [positive], name=f"{name}_relu"),
                depthwise(positive, minus, f"{name}_minus_positive"),
                helper.make_node("Add", [x, f"{name}_minus_positive"], [negative], name=f"{name}_x_minus_r"),
                depthwise(negative, per_channel, scaled),
                helper.make_node("Add", [positive, scaled], [y], name=f"{name}_add"),
            ]
        else:
            zero = f"{name}_zero"
            added.append(numpy_helper.from_array(np.zeros((), np.float32), zero))
            nodes += [
                helper.make_node("Relu", [x], [positive], name=f"{name}_relu"),
                helper.make_node("Min", [x, zero], [negative], name=f"{name}_min"),
                helper.make_node("Mul", [negative, slope_name], [scaled], name=f"{name}_mul"),
                helper.make_node("Add", [positive, scaled], [y], name=f"{name}_add"),
            ]
    used = {name for node in nodes for name in node.input}
    kept = [init for init in split.graph.initializer if init.name in used]
    del split.graph.initializer[:]
    split.graph.initializer.extend([*kept, *added])
    del split.graph.node[:]
    split.graph.node.extend(nodes)
    onnx.checker.check_model(split)
    return split


def _check_inputs(model: onnx.ModelProto) -> list[dict[str, npt.NDArray[np.float32]]]:
    """Normalised pixels in MTCNN's (N, width, height, 3) layout, including the extremes."""
    (graph_input,) = model.graph.input
    dims = [dim.dim_value for dim in graph_input.type.tensor_type.shape.dim]
    side = dims[1] or CHECK_SIDE
    batch = 1 if not dims[1] else CHECK_BATCH
    generator = np.random.default_rng(0)
    pixels = generator.integers(0, 256, (batch, side, side, 3)).astype(np.float32)
    flat = np.zeros_like(pixels)
    bright = np.full_like(pixels, 255.0)
    return [{graph_input.name: (p - 127.5) / 128.0} for p in (pixels, flat, bright)]


def _best_seconds(session: OnnxSession, feeds: dict[str, npt.NDArray[np.float32]]) -> float:
    best = float("inf")
    for _ in range(TIMED_RUNS):
        started = time.perf_counter()
        session.run(feeds)
        best = min(best, time.perf_counter() - started)
    return best


def write_split_graph(source: Path, target: Path) -> None:
    """``split_prelu`` of the graph at ``source``, written atomically to ``target`` with its checksum
    record (``core.checksums``) once it gives exactly the source's outputs here, in less time. A
    refusal is recorded in ``mtcnn.refusal_path(target)`` and raised as ``WeightsUnavailableError``;
    any other failure (a damaged source, a read-only folder) raises it too, unrecorded."""
    try:
        model = onnx.load(source)
        split = split_prelu(model).SerializeToString()
        original, rewritten = OnnxSession(source), OnnxSession(split)
        checks = _check_inputs(model)
        for feeds in checks:
            for expected, got in zip(original.run(feeds), rewritten.run(feeds), strict=True):
                if not np.array_equal(expected, got):
                    _refuse(target, f"{source.name} with its PRelu nodes split computes other numbers here")
        shipped = faster = float("inf")
        for _ in range(2):  # in turn, so that a busy moment of the machine weighs on both
            shipped = min(shipped, _best_seconds(original, checks[0]))
            faster = min(faster, _best_seconds(rewritten, checks[0]))
        if faster >= shipped:
            _refuse(
                target,
                f"{source.name} with its PRelu nodes split is not faster here "
                f"({1000 * faster:.2f} ms against {1000 * shipped:.2f})",
            )
        write_with_checksum(target, split)
    except (OSError, DecodeError, KeyError, ValueError, RuntimeError, onnx.checker.ValidationError) as error:
        # ONNX Runtime's load and run errors are RuntimeErrors.
        raise WeightsUnavailableError(f"cannot split the PRelu nodes of {source.name}: {error}") from error


def _refuse(target: Path, reason: str) -> NoReturn:
    write_bytes_atomically(refusal_path(target), f"{reason}\n".encode())
    raise WeightsUnavailableError(reason)


def main() -> None:
    stop_when_orphaned_from_environment()
    if len(sys.argv) != 3:
        sys.stderr.write("usage: python -m faceforge.building.networks.detector_graphs SOURCE TARGET\n")
        raise SystemExit(2)
    try:
        write_split_graph(Path(sys.argv[1]), Path(sys.argv[2]))
    except WeightsUnavailableError as error:
        sys.stderr.write(f"{error.message}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
