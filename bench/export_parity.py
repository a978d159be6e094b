"""How closely each exported model reproduces the server on real faces (the tests hold the tolerances).

Usage: .venv/bin/python -m bench.export_parity
Head: five enrolment photos per krasserm_lfw10 person. Probes: every krasserm_lfw10 photo plus the
strangers of unknown_singles and azure_face_samples. The server's answer is the identify path (ONNX
embedder, then the head). Core ML cannot run on Linux; its fp16 compute is emulated with the
embedding network in half precision and the head weights read from model.mlmodel.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from faceforge.building.export import coreml_models
from faceforge.building.export.tflite_models import run_tflite
from faceforge.building.export.version_exports import VersionExporter
from faceforge.building.head_fitting import fit_head
from faceforge.building.networks.embedding_graph import build_embedding_net
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.serving.vision.embedder import unit_rows
from faceforge.serving.vision.face_input import FaceInputs
from faceforge.serving.vision.pipeline import FacePipeline, PhotoError

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
LFW10 = FACES / "krasserm_lfw10"


def _softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), np.float32)


def main() -> None:
    settings = Settings(
        home=Path(tempfile.mkdtemp(prefix="faceforge-bench-")),
        weights_cache=Path(tempfile.gettempdir()) / "faceforge-bench" / "weights",
    )
    pipeline = FacePipeline(settings)
    enrolled, labels = [], []
    for folder in sorted(p for p in LFW10.iterdir() if p.is_dir()):
        for result in pipeline.analyze_many(image_files(folder)[:5], single_face=True):
            if (
                not isinstance(result, PhotoError)
                and not result.reasons
                and result.faces[0].embedding is not None
            ):
                enrolled.append(result.faces[0].embedding)
                labels.append(folder.name)
    head = fit_head(np.stack(enrolled), labels)
    found = []
    for path in (
        image_files(LFW10)
        + image_files(FACES / "unknown_singles")
        + image_files(FACES / "azure_face_samples")
    ):
        image = pipeline.decode(path.read_bytes())
        faces = pipeline.detect(image)
        if faces:
            found.append(pipeline.inputs(image, [faces[0].box]))
    batch = FaceInputs(np.concatenate([f.crops for f in found]), np.concatenate([f.chips for f in found]))
    reference = pipeline.reference_embedder().embed(batch)  # the float graph, as contract vectors are
    expected = head.probabilities(reference)
    exports = VersionExporter(settings.weights_dir).export(head)

    nhwc = {"face": batch.crops.astype(np.float32), "chip": batch.chips.astype(np.float32)}
    nchw = {name: np.ascontiguousarray(value.transpose(0, 3, 1, 2)) for name, value in nhwc.items()}
    onnx_fused = ort.InferenceSession(exports.files["model.onnx"]).run(None, nchw)[0]
    tflite = run_tflite(exports.files["model.tflite"], nhwc)
    int8 = run_tflite(exports.files["model_int8.tflite"], nhwc)
    backbone_cosines = {
        name: np.sum(unit_rows(run_tflite(exports.shared[name].read_bytes(), nhwc)) * reference, axis=1)
        for name in ("backbone.tflite", "backbone_int8.tflite")
    }
    int8_onnx = unit_rows(ort.InferenceSession(exports.shared["backbone_int8.onnx"]).run(None, nchw)[0])
    backbone_cosines["backbone_int8.onnx"] = np.sum(int8_onnx * reference, axis=1)

    net = build_embedding_net(
        settings.weights_dir, channels_last=True, normalise_pixels=True, stack_flip=True
    ).half()
    with torch.inference_mode():
        face = torch.from_numpy(nhwc["face"]).half()
        chip = torch.from_numpy(nhwc["chip"]).half()
        half = (
            torch.cat([net(face[i : i + 16], chip[i : i + 16]) for i in range(0, len(face), 16)])
            .float()
            .numpy()
        )
    layers = coreml_models.load_spec(exports.files["model.mlmodel"]).neuralNetworkClassifier.layers
    (inner,) = [
        layer.innerProduct
        for layer in layers
        if layer.name.startswith("head_") and layer.WhichOneof("layer") == "innerProduct"
    ]
    weights = (
        np.frombuffer(inner.weights.float16Value, "<f2").astype(np.float32).reshape(len(head.labels) + 1, -1)
    )
    bias = np.frombuffer(inner.bias.float16Value, "<f2").astype(np.float32)
    coreml_fp16 = _softmax(half.astype(np.float16).astype(np.float32) @ weights.T + bias)
    backbone_cosines["backbone.mlmodel (fp16 emulated)"] = np.sum(
        unit_rows(half.astype(np.float16).astype(np.float32)) * reference, axis=1
    )

    def difference(actual: npt.NDArray[np.float32]) -> float:
        return float(np.abs(actual - expected).max())

    def top1(actual: npt.NDArray[np.float32]) -> float:
        return float(np.mean(actual.argmax(axis=1) == expected.argmax(axis=1)))

    print(
        json.dumps(
            {
                "benchmark": "export_parity",
                "faces": len(batch),
                "people": len(head.labels),
                "onnx_fused_max_abs_diff": difference(onnx_fused),
                "tflite_fp32_max_abs_diff": difference(tflite),
                "tflite_int8_max_abs_diff": difference(int8),
                "onnx_int8_max_abs_diff": difference(head.probabilities(int8_onnx)),
                "tflite_int8_top1_agreement": top1(int8),
                "coreml_fp16_emulated_max_abs_diff": difference(coreml_fp16),
                "coreml_fp16_emulated_top1_agreement": top1(coreml_fp16),
                # Each backbone file's embedding against the float graph's (the contract vectors').
                "embedding_cosine_min": {name: float(c.min()) for name, c in backbone_cosines.items()},
                "embedding_cosine_mean": {name: float(c.mean()) for name, c in backbone_cosines.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
