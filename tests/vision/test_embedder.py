"""The ONNX Runtime embedder and the PyTorch module agree, and embeddings are unit vectors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceforge.config import Settings
from faceforge.evaluation.dataset import image_files
from faceforge.vision.crop import CROP_SIZE, crop_face
from faceforge.vision.embedder import EmbedderRuntime, FaceEmbedder
from faceforge.vision.pipeline import FacePipeline, PhotoError
from tests.conftest import FACES


def _largest_face_crops(pipeline: FacePipeline) -> np.ndarray:
    crops = []
    for path in image_files(FACES / "face_recognition_examples"):
        image = pipeline.decode(path.read_bytes())
        faces = pipeline.detect(image)
        assert faces, path.name
        crops.append(crop_face(Image.fromarray(image), faces[0].box))
    return np.stack(crops)


def _embeddings(pipeline: FacePipeline, person: str) -> np.ndarray:
    results = pipeline.analyze_many(
        image_files(FACES / "face_recognition_examples" / person), single_face=True
    )
    vectors = []
    for result in results:
        assert not isinstance(result, PhotoError) and not result.reasons
        assert result.faces[0].embedding is not None
        vectors.append(result.faces[0].embedding)
    return np.stack(vectors)


def test_onnx_and_torch_agree_to_1e4(pipeline: FacePipeline, settings: Settings) -> None:
    crops = _largest_face_crops(pipeline)
    onnx = FaceEmbedder(settings.weights_dir, runtime=EmbedderRuntime.ONNX).embed(crops)
    torch_ = FaceEmbedder(settings.weights_dir, runtime=EmbedderRuntime.TORCH).embed(crops)
    assert onnx.shape == (len(crops), 512)
    np.testing.assert_allclose(onnx, torch_, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)


def test_rejects_wrong_crop_shape(pipeline: FacePipeline) -> None:
    with pytest.raises(ValueError, match="crops"):
        pipeline.embedder.embed(np.zeros((1, CROP_SIZE, CROP_SIZE // 2, 3), np.uint8))


def test_same_person_is_closer_than_different_people(pipeline: FacePipeline) -> None:
    obama, biden = _embeddings(pipeline, "Barack_Obama"), _embeddings(pipeline, "Joe_Biden")
    assert len(obama) >= 2 and len(biden) >= 1
    same = float(obama[0] @ obama[1])
    cross = float((obama @ biden.T).max())
    assert same > 0.6 > cross, (same, cross)
