"""Our PyTorch FaceNet must reproduce the shipped TensorFlow graph, as OpenCV's DNN module runs it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from faceforge.building.weights.facenet_weights import load_facenet
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.weight_sources import facenet_graph_path
from faceforge.serving.vision.crop import PIXEL_MEAN, PIXEL_SCALE, crop_face
from faceforge.serving.vision.pipeline import FacePipeline
from tests.conftest import LFW10

# Two photos of each of the ten people: a port that is wrong shows on any face, and the reference
# implementations are slow (the whole folder took a minute and a half per test on this machine).
PHOTOS = [path for person in sorted(LFW10.iterdir()) if person.is_dir() for path in image_files(person)[:2]]


def test_every_lfw10_person_matches_opencv_reference(pipeline: FacePipeline, settings: Settings) -> None:
    reference = cv2.dnn.readNetFromTensorflow(str(facenet_graph_path()))
    ours = load_facenet(settings.weights_dir)
    checked = 0
    for path in PHOTOS:
        image = pipeline.decode(path.read_bytes())
        faces = pipeline.detect(image)
        assert faces, f"no face detected in {path.name}"
        crop = crop_face(Image.fromarray(image), faces[0].box).astype(np.float32)
        blob = np.ascontiguousarray(((crop - PIXEL_MEAN) / PIXEL_SCALE).transpose(2, 0, 1)[None])
        reference.setInput(blob)
        expected = reference.forward().ravel()
        with torch.inference_mode():
            actual = ours(torch.from_numpy(blob)).numpy().ravel()
        cosine = float(actual @ expected / (np.linalg.norm(actual) * np.linalg.norm(expected)))
        assert cosine >= 0.9999, f"{path.name}: cosine {cosine}"
        checked += 1
    assert checked == len(PHOTOS) == 20


def test_conversion_is_cached_once(settings: Settings, tmp_path: Path) -> None:
    weights_dir = tmp_path / "weights"
    load_facenet(weights_dir)
    cached = list(weights_dir.glob("facenet-casia-*.safetensors"))
    assert len(cached) == 1
    first_mtime = cached[0].stat().st_mtime_ns
    model = load_facenet(weights_dir)
    assert cached[0].stat().st_mtime_ns == first_mtime  # reused, not rewritten
    assert not list(weights_dir.glob(".*.tmp"))  # no temp file left behind
    assert sum(p.numel() for p in model.parameters()) > 20_000_000
