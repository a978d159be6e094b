"""The ONNX Runtime embedder and the PyTorch module agree, and embeddings are unit vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.embedding_space import EMBEDDING_SIZE
from faceforge.serving.vision.align import CHIP_SIZE
from faceforge.serving.vision.crop import CROP_SIZE
from faceforge.serving.vision.embedder import FaceEmbedder
from faceforge.serving.vision.face_input import FaceInputs
from faceforge.serving.vision.pipeline import FacePipeline, PhotoError
from tests.conftest import FACES


def _largest_face_inputs(pipeline: FacePipeline) -> FaceInputs:
    crops, chips = [], []
    for path in image_files(FACES / "face_recognition_examples"):
        image = pipeline.decode(path.read_bytes())
        faces = pipeline.detect(image)
        assert faces, path.name
        inputs = pipeline.inputs(image, [faces[0].box])
        crops.append(inputs.crops[0])
        chips.append(inputs.chips[0])
    return FaceInputs(np.stack(crops), np.stack(chips))


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


def _torch_embeddings(weights_dir: Path, inputs: FaceInputs) -> np.ndarray:
    """The PyTorch network itself (the building side's), on the same inputs as the ONNX graph."""
    import torch

    from faceforge.building.networks.embedding_graph import build_embedding_net

    net = build_embedding_net(weights_dir)
    face = torch.from_numpy(np.ascontiguousarray(inputs.crops.transpose(0, 3, 1, 2), dtype=np.float32))
    chip = torch.from_numpy(np.ascontiguousarray(inputs.chips.transpose(0, 3, 1, 2), dtype=np.float32))
    with torch.inference_mode():
        embeddings: np.ndarray = net(face, chip).numpy()
    return embeddings


def test_onnx_and_torch_agree_to_1e4(pipeline: FacePipeline, settings: Settings) -> None:
    inputs = _largest_face_inputs(pipeline)
    onnx = FaceEmbedder(settings.weights_dir, precision="float").embed(inputs)
    torch_ = _torch_embeddings(settings.weights_dir, inputs)
    assert onnx.shape == (len(inputs), EMBEDDING_SIZE)
    np.testing.assert_allclose(onnx, torch_, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)


def test_rejects_wrong_input_shapes() -> None:
    chips = np.zeros((1, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
    with pytest.raises(ValueError, match="crops"):
        FaceInputs(np.zeros((1, CROP_SIZE, CROP_SIZE // 2, 3), np.uint8), chips)
    with pytest.raises(ValueError, match="chips"):
        FaceInputs(np.zeros((1, CROP_SIZE, CROP_SIZE, 3), np.uint8), chips[:, :, :100])
    with pytest.raises(ValueError, match="2 crops but 1 chips"):
        FaceInputs(np.zeros((2, CROP_SIZE, CROP_SIZE, 3), np.uint8), chips)


def test_same_person_is_closer_than_different_people(pipeline: FacePipeline) -> None:
    """Obama's photos against each other and against Biden's, around the fused embedder's prior
    threshold for one enrolled person (``core.model.head.DEFAULT_THRESHOLD``)."""
    obama, biden = _embeddings(pipeline, "Barack_Obama"), _embeddings(pipeline, "Joe_Biden")
    assert len(obama) >= 2 and len(biden) >= 1
    same = float(obama[0] @ obama[1])
    cross = float((obama @ biden.T).max())
    assert same > 0.86 > cross, (same, cross)
