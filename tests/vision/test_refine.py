"""The refiner: our O-Net port equals the shipped graph, and other detectors' boxes, once refined,
become the box and points MTCNN gives (what makes phone crops match the server's)."""

from __future__ import annotations

import dlib
import numpy as np
import torch
from PIL import Image

from faceforge.building.weights.onet_weights import load_onet
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.faces import Box
from faceforge.serving.vision.pipeline import FacePipeline
from faceforge.serving.vision.refine import refine_faces, refiner_patch
from tests.conftest import LFW10

# Measured on krasserm_lfw10's 100 faces (dlib HOG boxes): raw HOG boxes overlap MTCNN's with IoU
# 0.48-0.87 (median 0.72); refined, they overlap MTCNN's refined boxes by 0.78-0.92 (5th percentile
# 0.86, median 0.92), and the five points agree within 1.6 % of the box side (median; 95th
# percentile 3 %, worst 6.6 %).
MIN_IOU = 0.8  # the 5th percentile must reach it
MAX_POINT_ERROR = 0.05  # of the box side, 95th percentile


def _iou(a: Box, b: Box) -> float:
    width = max(0.0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    height = max(0.0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    inter = width * height
    return inter / (a.area + b.area - inter)


def test_our_onet_port_equals_the_shipped_graph(pipeline: FacePipeline, settings: Settings) -> None:
    port = load_onet(settings.weights_dir)
    patches = []
    for path in image_files(LFW10)[::10]:
        image = pipeline.decode(path.read_bytes())
        patch, _ = refiner_patch(Image.fromarray(image), pipeline.detect(image)[0].box)
        patches.append(patch)
    batch = np.stack(patches)
    expected = pipeline.detector.describe_patches(batch)
    with torch.inference_mode():
        actual = port(torch.from_numpy(batch.transpose(0, 3, 1, 2).astype(np.float32)))
    for ours, theirs in zip(actual, expected, strict=True):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)
    assert (expected[0] > 0.99).all()  # every patch holds a face


def test_refined_hog_boxes_land_on_mtcnns(pipeline: FacePipeline) -> None:
    hog = dlib.get_frontal_face_detector()
    raw_ious, ious, point_errors = [], [], []
    for path in image_files(LFW10):
        image = pipeline.decode(path.read_bytes())
        picture = Image.fromarray(image)
        found = hog(image, 1)
        if not found:
            continue
        rect = max(found, key=lambda r: r.area())
        hog_box = Box(rect.left(), rect.top(), rect.width(), rect.height())
        mtcnn_box = pipeline.detect(image)[0].box
        (from_hog, from_mtcnn) = refine_faces(
            picture, [hog_box, mtcnn_box], pipeline.detector.describe_patches
        )
        raw_ious.append(_iou(hog_box, mtcnn_box))
        ious.append(_iou(from_hog.box, from_mtcnn.box))
        side = max(from_mtcnn.box.width, from_mtcnn.box.height)
        distances = np.linalg.norm(
            np.subtract(from_hog.landmarks.points, from_mtcnn.landmarks.points), axis=1
        )
        point_errors.append(float(distances.max()) / side)
    assert len(ious) >= 95
    assert np.median(ious) >= np.median(raw_ious) + 0.1  # HOG's boxes really are elsewhere
    assert np.quantile(ious, 0.05) >= MIN_IOU, sorted(ious)[:5]
    assert np.quantile(point_errors, 0.95) <= MAX_POINT_ERROR, sorted(point_errors)[-5:]
