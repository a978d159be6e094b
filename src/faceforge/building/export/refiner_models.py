"""The refiner (MTCNN's O-Net, ``building.networks.onet``) in every on-device format, converted once.

An app runs it on a 48 x 48 patch cut around its own detector's box, and crops from its answer
(``serving.vision.refine``), so phone crops match the server's. Files, identical in every version:

- ``refiner.onnx``: ``patch`` ``(N, 3, 48, 48)`` float32 RGB 0-255;
- ``refiner.tflite``: ``patch`` ``(1, 48, 48, 3)`` float32 RGB 0-255, signature ``serving_default``;
- ``refiner.mlmodel``: Core ML NeuralNetwork, ``patch`` a 48 x 48 RGB image (preprocessing
  ``v / 128 - 127.5 / 128``), fp16 weights.

Outputs, in that order: ``face_probability`` ``(N,)``, ``box_offsets`` ``(N, 4)``, ``landmarks``
``(N, 10)``, as ``building.networks.onet`` documents them. ONNX and TFLite files are held to the server's own
O-Net graph to ``PARITY_TOLERANCE`` before they are cached; the Core ML spec is checked for its
input, preprocessing and outputs.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from faceforge.building.export import coreml_models, tflite_models
from faceforge.building.networks.onet import PIXEL_MEAN, PIXEL_SCALE
from faceforge.building.weights.onet_weights import load_onet, onet_graph_path
from faceforge.core.errors import ExportError
from faceforge.core.interrupts import import_held
from faceforge.serving.vision.refine import PATCH_SIZE

log = logging.getLogger(__name__)

PATCH_INPUT = "patch"
OUTPUTS = ("face_probability", "box_offsets", "landmarks")
PARITY_TOLERANCE = 1e-4
PROBE_SEED = 1


def probe_patches(count: int = 4) -> npt.NDArray[np.float32]:
    """A fixed ``(count, 48, 48, 3)`` 0-255 NHWC batch to hold converted refiners to the server's."""
    shape = (count, PATCH_SIZE, PATCH_SIZE, 3)
    return np.random.default_rng(PROBE_SEED).uniform(0, 255, shape).astype(np.float32)


def server_answers(patches: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
    """The shipped O-Net graph (what the server runs) on NHWC 0-255 patches, in ``OUTPUTS`` order."""
    session = ort.InferenceSession(str(onet_graph_path()), providers=["CPUExecutionProvider"])
    normalised = ((patches - PIXEL_MEAN) / PIXEL_SCALE).transpose(0, 2, 1, 3).astype(np.float32)
    offsets, landmarks, probabilities = session.run(None, {"input_3": normalised})
    return [probabilities[:, 1], offsets, landmarks]


def check_parity(what: str, actual: list[npt.NDArray[np.float32]]) -> None:
    expected = server_answers(probe_patches())
    for name, got, wanted in zip(OUTPUTS, actual, expected, strict=True):
        got = np.asarray(got, np.float32).reshape(wanted.shape)
        difference = float(np.abs(got - wanted).max())
        if difference > PARITY_TOLERANCE:
            raise ExportError(f"{what}: {name} differs from the server's refiner by {difference:.2e}")


def convert_onnx(weights_dir: Path) -> bytes:
    net = load_onet(weights_dir)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        net,
        (torch.zeros(2, 3, PATCH_SIZE, PATCH_SIZE),),
        input_names=[PATCH_INPUT],
        output_names=list(OUTPUTS),
        dynamic_shapes={"patch": {0: batch}},
        opset_version=18,
        dynamo=True,
        verbose=False,
    )
    if program is None:
        raise ExportError("torch.onnx.export returned no refiner program")
    data: bytes = program.model_proto.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    nchw = np.ascontiguousarray(probe_patches().transpose(0, 3, 1, 2))
    check_parity("refiner.onnx", session.run(list(OUTPUTS), {PATCH_INPUT: nchw}))
    return data


def convert_tflite(weights_dir: Path) -> bytes:
    import_held("litert_torch")  # heavy (JAX, MLIR): only when a file is converted
    import litert_torch

    net = load_onet(weights_dir, channels_last=True)
    edge_model = litert_torch.convert(net.eval(), (torch.zeros(1, PATCH_SIZE, PATCH_SIZE, 3),))
    model = tflite_models.read_model(bytes(edge_model.model_content()))
    tflite_models.rename_signature(model, inputs=[PATCH_INPUT], outputs=list(OUTPUTS))
    data = tflite_models.write_model(model)
    check_parity("refiner.tflite", run_tflite_refiner(data, probe_patches()))
    return data


def run_tflite_refiner(model: bytes, patches: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=model, num_threads=1).get_signature_runner(tflite_models.SIGNATURE_KEY)
    rows = [runner(**{PATCH_INPUT: patch[None]}) for patch in patches]
    return [np.concatenate([np.reshape(row[name], (1, -1)) for row in rows]) for name in OUTPUTS]


def convert_coreml(weights_dir: Path) -> bytes:
    ct = coreml_models.coremltools()
    net = load_onet(weights_dir, normalise_pixels=False)
    traced = coreml_models.trace(net, (torch.zeros(1, 3, PATCH_SIZE, PATCH_SIZE),))
    model = ct.convert(
        traced,
        inputs=[
            ct.ImageType(
                name=PATCH_INPUT,
                shape=(1, 3, PATCH_SIZE, PATCH_SIZE),
                scale=1.0 / PIXEL_SCALE,
                bias=[-PIXEL_MEAN / PIXEL_SCALE] * 3,
                color_layout=ct.colorlayout.RGB,
            )
        ],
        outputs=[ct.TensorType(name=name) for name in OUTPUTS],
        convert_to="neuralnetwork",
        skip_model_load=True,
    )
    spec = model.get_spec()
    coreml_models.to_float16(spec.neuralNetwork.layers)
    spec = coreml_models.describe(spec, "faceforge refiner (MTCNN O-Net): 48x48 RGB patch -> box and points")
    problems = refiner_spec_problems(spec)
    if problems:
        raise ExportError(f"refiner.mlmodel: {'; '.join(problems)}")
    return coreml_models.serialize(spec)


def refiner_spec_problems(spec: Any) -> list[str]:
    """What is wrong with a Core ML refiner spec: its image input, preprocessing, outputs, weights."""
    from faceforge.building.export.coreml_checks import float16_problems

    problems = []
    inputs = list(spec.description.input)
    if [f.name for f in inputs] != [PATCH_INPUT] or inputs[0].type.WhichOneof("Type") != "imageType":
        return [f"inputs are {[f.name for f in inputs]}, expected the image {PATCH_INPUT!r}"]
    image = inputs[0].type.imageType
    if (image.width, image.height, image.colorSpace) != (PATCH_SIZE, PATCH_SIZE, image.RGB):
        problems.append(f"patch is {image.width}x{image.height}, colour space {image.colorSpace}")
    outputs = [f.name for f in spec.description.output]
    if outputs != list(OUTPUTS):
        problems.append(f"outputs are {outputs}, expected {list(OUTPUTS)}")
    scalers = [p.scaler for p in spec.neuralNetwork.preprocessing if p.featureName == PATCH_INPUT]
    expected_bias = -PIXEL_MEAN / PIXEL_SCALE
    if len(scalers) != 1 or not math.isclose(scalers[0].channelScale, 1.0 / PIXEL_SCALE, rel_tol=1e-6):
        problems.append("the patch is not scaled by 1/128")
    elif not all(
        math.isclose(b, expected_bias, rel_tol=1e-6)
        for b in (scalers[0].redBias, scalers[0].greenBias, scalers[0].blueBias)
    ):
        problems.append("the patch bias is not -127.5/128")
    return problems + float16_problems(spec.neuralNetwork.layers)
