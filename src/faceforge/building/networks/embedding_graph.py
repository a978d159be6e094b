"""The embedding network in PyTorch and its one-time export to ONNX (worker and tools only).

PyTorch is imported by the functions that need it, not by this module: a worker hands
``export_embedding_graph`` to the pipeline, which calls it only when the cached graph is missing, and
a server whose versions are ONNX alone never converts anything (importing PyTorch cost each start
2.2 s of a core). Processes that only serve requests never import it at all: when the cached graph
is missing, ``serving.vision.embedder`` runs ``python -m faceforge.building.networks.embedding_graph``
in a child process instead, so PyTorch's few hundred megabytes never enter the API process.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from faceforge.core.atomic import write_atomically
from faceforge.core.checksums import record_sha256
from faceforge.core.interrupts import import_held
from faceforge.core.parent_watch import stop_when_orphaned_from_environment
from faceforge.serving.vision.align import CHIP_SIZE
from faceforge.serving.vision.crop import CROP_SIZE

if TYPE_CHECKING:
    from faceforge.building.networks.embedding_net import FaceEmbeddingNet

ONNX_OPSET = 18


def build_embedding_net(weights_dir: Path, **layout: bool) -> FaceEmbeddingNet:
    """The PyTorch embedding network in eval mode; ``layout`` as ``FaceEmbeddingNet`` takes it."""
    from faceforge.building.networks.embedding_net import FaceEmbeddingNet
    from faceforge.building.weights.dlib_weights import load_dlib_resnet
    from faceforge.building.weights.facenet_weights import load_facenet

    dlib, means = load_dlib_resnet(weights_dir)
    return FaceEmbeddingNet(load_facenet(weights_dir), dlib, means, **layout).eval()


def export_embedding_onnx(net: FaceEmbeddingNet, target: Path) -> None:
    """Export ``net`` to ONNX (torch.export), dynamic batch: inputs ``face`` and ``chip``, output
    ``embedding``."""
    import_held("torch")
    import torch

    example = (torch.zeros(2, 3, CROP_SIZE, CROP_SIZE), torch.zeros(2, 3, CHIP_SIZE, CHIP_SIZE))
    batch = torch.export.Dim("batch", min=1, max=4096)
    exporter_log = logging.getLogger("torch.onnx")
    previous_level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about every torchvision op it cannot register
    try:
        program = torch.onnx.export(
            net,
            example,
            input_names=["face", "chip"],
            output_names=["embedding"],
            dynamic_shapes={"face": {0: batch}, "chip": {0: batch}},
            opset_version=ONNX_OPSET,
            dynamo=True,
            verbose=False,
        )
    finally:
        exporter_log.setLevel(previous_level)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    write_atomically(target, lambda temp: program.save(str(temp)))
    record_sha256(target)  # every version links this file and lists its digest


def export_embedding_graph(weights_dir: Path, target: Path) -> None:
    """The server's embedding graph of the weights in ``weights_dir``, written to ``target`` (a
    ``serving.vision.embedder.GraphExport``)."""
    export_embedding_onnx(build_embedding_net(weights_dir), target)


def main(argv: list[str]) -> int:
    """``python -m faceforge.building.networks.embedding_graph WEIGHTS_DIR TARGET``: convert, export once."""
    if len(argv) != 2:
        sys.stderr.write("usage: python -m faceforge.building.networks.embedding_graph WEIGHTS_DIR TARGET\n")
        return 2
    weights_dir, target = map(Path, argv)
    stop_when_orphaned_from_environment()
    export_embedding_onnx(build_embedding_net(weights_dir), target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
