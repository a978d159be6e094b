"""Convert dlib's face descriptor network (PyPI ``face-recognition-models``) into our module, once.

The file is read with our own parser (``building.weights.dlib_serialized``); dlib itself is not needed. The
converted state dict is cached as safetensors under ``<home>/weights``, named after the SHA-256 of
the source file, like FaceNet's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from faceforge.building.networks.dlib_resnet import INPUT_SIZE, DlibFaceResNet
from faceforge.building.weights.dlib_serialized import (
    AFFINE,
    CONV,
    DLIB_RGB_MEANS,
    FC,
    INPUT_RGB,
    DlibLayer,
    read_dlib_layers,
)
from faceforge.core.atomic import file_sha256, write_atomically
from faceforge.core.errors import WeightsUnavailableError
from faceforge.core.weight_sources import DLIB_PIP_NAME, dlib_descriptor_path

log = logging.getLogger(__name__)


def _only(layers: list[DlibLayer], kind: str, source: Path) -> list[DlibLayer]:
    found = [layer for layer in layers if layer.kind == kind]
    if not found:
        raise WeightsUnavailableError(f"{source.name} has no {kind} layer: not dlib's face descriptor")
    return found


def state_dict_from_dlib(source: Path) -> tuple[dict[str, torch.Tensor], tuple[float, float, float]]:
    """Map the file's layers onto ``DlibFaceResNet``; also return the input layer's RGB means.

    A convolution's parameters are its filters (num_filters, channels, rows, cols) followed by its
    biases; an affine's are gamma then beta; the fully connected layer's are an
    (inputs, outputs) matrix applied as ``x @ W``.
    """
    layers = read_dlib_layers(source)
    (input_layer,) = _only(layers, INPUT_RGB, source)
    if (input_layer.settings["rows"], input_layer.settings["cols"]) != (INPUT_SIZE, INPUT_SIZE):
        raise WeightsUnavailableError(f"{source.name}: input is not {INPUT_SIZE}x{INPUT_SIZE}")
    assert input_layer.means is not None
    if not np.allclose(input_layer.means, DLIB_RGB_MEANS, atol=1e-3):
        raise WeightsUnavailableError(
            f"{source.name}: input means {input_layer.means}, expected {DLIB_RGB_MEANS}"
        )
    convolutions = _only(layers, CONV, source)
    affines = _only(layers, AFFINE, source)
    (fc,) = _only(layers, FC, source)

    model = DlibFaceResNet()
    targets = list(model.convolutions())
    if len(convolutions) != len(targets) or len(affines) != len(targets):
        raise WeightsUnavailableError(
            f"{source.name}: {len(convolutions)} convolutions and {len(affines)} affines, "
            f"expected {len(targets)} of each"
        )
    names = {module: name for name, module in model.named_modules()}
    state: dict[str, torch.Tensor] = {}
    for (conv, affine), conv_layer, affine_layer in zip(targets, convolutions, affines, strict=True):
        settings = conv_layer.settings
        expected = (conv.out_channels, conv.kernel_size[0], conv.kernel_size[1], conv.stride[0])
        found = (settings["filters"], settings["rows"], settings["cols"], settings["stride_y"])
        assert conv_layer.params is not None and affine_layer.params is not None
        weight_count = conv.weight.numel()
        if found != expected or conv_layer.params.size != weight_count + conv.out_channels:
            raise WeightsUnavailableError(f"{source.name}: convolution {found} where {expected} belongs")
        if affine_layer.params.size != 2 * conv.out_channels:
            raise WeightsUnavailableError(f"{source.name}: affine of the wrong size after {found}")
        values = conv_layer.params.ravel()
        state[f"{names[conv]}.weight"] = torch.from_numpy(
            values[:weight_count].reshape(conv.weight.shape).copy()
        )
        state[f"{names[conv]}.bias"] = torch.from_numpy(values[weight_count:].copy())
        gamma, beta = np.split(affine_layer.params.ravel(), 2)
        state[f"{names[affine]}.gamma"] = torch.from_numpy(gamma.copy())
        state[f"{names[affine]}.beta"] = torch.from_numpy(beta.copy())
    assert fc.params is not None
    if (fc.settings["inputs"], fc.settings["outputs"]) != (model.fc.in_features, model.fc.out_features):
        raise WeightsUnavailableError(f"{source.name}: fully connected layer of the wrong shape")
    matrix = fc.params.reshape(model.fc.in_features, model.fc.out_features)
    state["fc.weight"] = torch.from_numpy(np.ascontiguousarray(matrix.T))

    missing = set(model.state_dict()) - set(state)
    if missing:
        raise WeightsUnavailableError(f"conversion left parameters unset: {sorted(missing)[:5]}")
    return state, input_layer.means


def load_dlib_resnet(weights_dir: Path) -> tuple[DlibFaceResNet, tuple[float, float, float]]:
    """dlib's face descriptor network in eval mode and its input RGB means; converted and cached on
    first use."""
    source = dlib_descriptor_path()
    digest = file_sha256(source)[:16]
    cached = weights_dir / f"dlib-resnet-{digest}.safetensors"
    if not cached.exists():
        log.info("converting %s into %s (once)", source, cached)
        state, means = state_dict_from_dlib(source)
        metadata = {"source": f"{DLIB_PIP_NAME}:{digest}", "rgb_means": ",".join(map(repr, means))}
        write_atomically(cached, lambda temp: save_file(state, str(temp), metadata=metadata))
    model = DlibFaceResNet()
    model.load_state_dict(load_file(str(cached)))
    with safe_open(str(cached), framework="pt") as handle:
        red, green, blue = (float(value) for value in handle.metadata()["rgb_means"].split(","))
    return model.eval(), (red, green, blue)
