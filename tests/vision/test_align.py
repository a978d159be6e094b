"""Alignment of degenerate points: a chip from the face's box instead of a 500 (``LinAlgError``)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceforge.core.faces import Landmarks
from faceforge.serving.vision.align import CHIP_TEMPLATE, align_face, template_in_box
from faceforge.serving.vision.pipeline import FacePipeline
from tests.conftest import LFW10

PHOTO = LFW10 / "Colin_Powell" / "Colin_Powell_0001.jpg"


def _no_rotation_or_scale(points: np.ndarray) -> np.ndarray:
    """Five distinct points whose least-squares similarity to the template has zero rotation and
    scale: their centred coordinates are orthogonal to the template's and to its 90-degree turn."""
    t = (CHIP_TEMPLATE - CHIP_TEMPLATE.mean(0)).ravel()
    turned = np.stack([-CHIP_TEMPLATE[:, 1], CHIP_TEMPLATE[:, 0]], axis=1)
    u = (turned - turned.mean(0)).ravel()
    s = (points - points.mean(0)).ravel()
    basis, _ = np.linalg.qr(np.stack([t, u], axis=1))
    s = s - basis @ (basis.T @ s)
    result: np.ndarray = s.reshape(5, 2) + points.mean(0)
    return result


@pytest.mark.parametrize("kind", ["coincident", "not_finite", "no_rotation_or_scale", "far_apart"])
def test_degenerate_points_give_the_chip_of_the_box(pipeline: FacePipeline, kind: str) -> None:
    image = pipeline.decode(PHOTO.read_bytes())
    face = pipeline.detect(image)[0]
    real = np.asarray(face.landmarks.points)
    points = {
        "coincident": np.repeat(real[:1], 5, axis=0),
        "not_finite": np.where(np.arange(10).reshape(5, 2) == 3, np.nan, real),
        "no_rotation_or_scale": _no_rotation_or_scale(real),
        "far_apart": real * 1e9,
    }[kind]
    picture = Image.fromarray(image)
    chip = align_face(picture, Landmarks(tuple(map(tuple, points.tolist()))), face.box)
    expected = align_face(picture, Landmarks(tuple(template_in_box(face.box))), face.box)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    assert np.array_equal(chip, expected)
