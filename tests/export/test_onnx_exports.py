"""ONNX files of a trained version match the server's identify path; backbones are shared by versions."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
from fastapi.testclient import TestClient

from faceforge.core.dataset import image_files
from faceforge.serving.vision.face_input import FaceInputs
from faceforge.serving.vision.pipeline import FacePipeline
from tests.api.fixtures import photo_fields, wait_until_trained
from tests.conftest import FACES, LFW10

PEOPLE = ["Colin_Powell", "Tony_Blair", "Hugo_Chavez"]


def test_fused_and_split_onnx_match_the_server(client: TestClient, pipeline: FacePipeline) -> None:
    for folder in PEOPLE:
        client.post(
            "/api/v1/people", data={"name": folder}, files=photo_fields(image_files(LFW10 / folder)[:5])
        )
    wait_until_trained(client)
    current = client.get("/api/v1/models/current").json()
    version = current["version"]

    def download(name: str) -> bytes:
        response = client.get(f"/api/v1/models/{version}/files/{name}")
        assert response.status_code == 200
        content: bytes = response.content
        assert hashlib.sha256(content).hexdigest() == current["files"][name]["sha256"]
        return content

    manifest = json.loads(download("manifest.json"))
    assert manifest["variants"]["onnx_fused"]["files"] == ["model.onnx"]
    assert manifest["variants"]["onnx_split"]["files"] == ["backbone.onnx", "head.onnx"]
    labels = manifest["onnx"]["output"]["labels"]
    assert labels[-1] == "unknown" and len(labels) == len(PEOPLE) + 1
    assert len(download("head.onnx")) < 1_000_000

    fused = ort.InferenceSession(download("model.onnx"), providers=["CPUExecutionProvider"])
    backbone = ort.InferenceSession(download("backbone.onnx"), providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(download("head.onnx"), providers=["CPUExecutionProvider"])
    services = client.app.state.services  # type: ignore[attr-defined]
    server = services.models.loaded(version).head

    probes = [p for folder in PEOPLE for p in image_files(LFW10 / folder)[5:8]] + image_files(
        FACES / "unknown_singles"
    )
    found = []
    for path in probes:
        image = pipeline.decode(path.read_bytes())
        found.append(pipeline.inputs(image, [pipeline.detect(image)[0].box]))
    inputs = FaceInputs(np.concatenate([f.crops for f in found]), np.concatenate([f.chips for f in found]))
    batch = {
        "face": inputs.crops.transpose(0, 3, 1, 2).astype(np.float32),
        "chip": inputs.chips.transpose(0, 3, 1, 2).astype(np.float32),
    }

    # The exports are float graphs: they are held to the server's float reference embedder (the
    # int8 graph the server may run is held to that reference in tests/vision/test_int8_embedder.py).
    expected = server.probabilities(pipeline.reference_embedder().embed(inputs))
    from_fused = fused.run(None, batch)[0]
    from_split = head.run(None, {"embedding": backbone.run(None, batch)[0]})[0]
    np.testing.assert_allclose(from_fused, expected, atol=1e-4)
    np.testing.assert_allclose(from_split, from_fused, atol=1e-4)

    predicted = [labels[i] for i in from_fused.argmax(axis=1)]
    known = [folder for folder in PEOPLE for _ in range(3)]
    assert all(label.startswith(f"{folder} (") for label, folder in zip(predicted, known, strict=False))
    assert predicted[len(known) :] == ["unknown"] * len(image_files(FACES / "unknown_singles"))

    # The backbone is one file on disk shared by every version (hard link), with one checksum.
    client.post(
        "/api/v1/people", data={"name": "Ariel"}, files=photo_fields(image_files(LFW10 / "Ariel_Sharon")[:4])
    )
    wait_until_trained(client)
    newer = client.get("/api/v1/models/current").json()
    assert newer["version"] == version + 1
    models_dir = services.settings.models_dir
    shared = ("backbone.onnx", "backbone.mlmodel", "backbone.tflite", "backbone_int8.tflite")
    detector = ("detector_pnet.onnx", "detector_rnet.onnx", "backbone_int8.onnx")
    for backbone_file in (*shared, *detector, "refiner.onnx", "refiner.mlmodel", "refiner.tflite"):
        assert newer["files"][backbone_file]["sha256"] == current["files"][backbone_file]["sha256"]
        assert (models_dir / str(version) / backbone_file).stat().st_ino == (
            models_dir / str(version + 1) / backbone_file
        ).stat().st_ino
    for head_file in ("head.onnx", "head.mlmodel", "head.tflite"):
        assert newer["files"][head_file]["sha256"] != current["files"][head_file]["sha256"]
        assert newer["files"][head_file]["size"] < 1_000_000
