"""Detection and per-photo verdicts on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceforge.core.dataset import image_files
from faceforge.core.embedding_space import EMBEDDING_SIZE
from faceforge.core.faces import RejectReason, Verdict
from faceforge.serving.vision.pipeline import FacePipeline, PhotoError
from tests.conftest import FACES, LFW10


def test_every_lfw10_photo_has_a_face_with_landmarks_inside_its_box(pipeline: FacePipeline) -> None:
    for path in image_files(LFW10):
        faces = pipeline.detect(pipeline.decode(path.read_bytes()))
        assert faces, path.name
        box = faces[0].box
        assert 40 < box.width < 250 and 40 < box.height < 250
        assert faces[0].score > 0.9
        for x, y in faces[0].landmarks.points:
            assert box.x - 5 <= x <= box.x + box.width + 5 and box.y - 5 <= y <= box.y + box.height + 5
        left_eye, right_eye = faces[0].landmarks.points[:2]
        assert left_eye[0] < right_eye[0]  # image-left eye first


def test_group_photos_find_several_faces_largest_first(pipeline: FacePipeline) -> None:
    counts = []
    for path in image_files(FACES / "multi"):
        result = pipeline.analyze(path.read_bytes(), single_face=False)
        areas = [face.detection.box.area for face in result.faces]
        assert areas == sorted(areas, reverse=True)
        assert all(
            face.embedding is not None and face.embedding.shape == (EMBEDDING_SIZE,) for face in result.faces
        )
        counts.append(len(result.faces))
    assert sum(count >= 2 for count in counts) >= 16, counts


@pytest.mark.parametrize("name", ["azure_detection5.jpg", "dlib_2007_007763.jpg", "dlib_bald_guys.jpg"])
def test_group_photo_is_rejected_for_enrolment(pipeline: FacePipeline, name: str) -> None:
    result = pipeline.analyze((FACES / "multi" / name).read_bytes(), single_face=True)
    assert result.verdict is Verdict.REJECTED
    assert result.reasons == [RejectReason.MULTIPLE_FACES]
    # Every usable face is embedded as a candidate for face_choice; the unusable ones are not.
    usable = [face for face in result.faces if not face.reasons]
    assert usable
    assert all(face.embedding is not None and face.embedding.shape == (EMBEDDING_SIZE,) for face in usable)
    assert all(face.embedding is None for face in result.faces if face.reasons)


def test_a_dominant_face_is_enrolled_despite_bystanders(pipeline: FacePipeline) -> None:
    result = pipeline.analyze((FACES / "multi" / "azure_detection4.jpg").read_bytes(), single_face=True)
    assert len(result.faces) >= 2
    assert result.verdict is Verdict.ACCEPTED
    assert result.faces[0].embedding is not None
    assert all(face.embedding is None for face in result.faces[1:])


def test_negatives_have_no_usable_face(pipeline: FacePipeline) -> None:
    for path in image_files(FACES / "negatives"):
        enrolment = pipeline.analyze(path.read_bytes(), single_face=True)
        assert enrolment.verdict is Verdict.REJECTED, path.name
        identification = pipeline.analyze(path.read_bytes(), single_face=False)
        assert identification.faces == [] and identification.reasons == [RejectReason.NO_FACE], path.name


def test_tight_face_chips_are_found(pipeline: FacePipeline) -> None:
    paths = image_files(FACES / "dlib_johns")
    results = pipeline.analyze_many(paths, single_face=True)
    accepted = sum(not isinstance(r, PhotoError) and r.verdict is Verdict.ACCEPTED for r in results)
    assert accepted >= 0.95 * len(paths)


def test_small_faces_are_flagged(pipeline: FacePipeline) -> None:
    image = pipeline.decode((LFW10 / "Ariel_Sharon" / "Ariel_Sharon_0001.jpg").read_bytes())
    small = np.asarray(Image.fromarray(image).resize((90, 90)))  # face now about 35 px
    result = pipeline.analyze_image(small, single_face=False)
    assert result.faces and RejectReason.FACE_TOO_SMALL in result.faces[0].reasons
    assert pipeline.analyze_image(small, single_face=True).verdict is Verdict.REJECTED


def test_batch_keeps_order_and_reports_bad_files(pipeline: FacePipeline, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not really a jpeg")
    missing = tmp_path / "missing.jpg"
    good = image_files(LFW10 / "Colin_Powell")[:3]
    results = pipeline.analyze_many([good[0], broken, good[1], missing, good[2]], single_face=True)
    assert [type(r).__name__ for r in results] == [
        "PhotoFaces",
        "PhotoError",
        "PhotoFaces",
        "PhotoError",
        "PhotoFaces",
    ]
    assert isinstance(results[1], PhotoError) and results[1].code == "not_an_image"
    assert isinstance(results[3], PhotoError) and results[3].code == "unreadable_file"


def test_a_detector_with_threads_finds_exactly_what_one_thread_finds(pipeline: FacePipeline) -> None:
    """An API process gives each photo its cores: pyramid levels and patches then run side by side,
    and every box, score and landmark must be the one a single thread computes (the browser client
    and the contract vectors reproduce the single-threaded detector to 0.05 px)."""
    from faceforge.serving.vision.crop import crop_face
    from faceforge.serving.vision.mtcnn import MtcnnConfig, MtcnnDetector, cached_graphs

    graphs = cached_graphs(pipeline.settings.weights_dir)
    one, two = (MtcnnDetector(MtcnnConfig(), threads=n, graphs=graphs) for n in (1, 2))
    photos = image_files(FACES / "multi") + image_files(LFW10)[::10]
    found = 0
    for path in photos:
        image = pipeline.decode(path.read_bytes())
        alone, side_by_side = one.detect(image), two.detect(image)
        assert alone == side_by_side, path.name
        found += len(alone)
        if len(alone) > 1:  # the refiner's O-Net on a photo's faces, in halves with threads
            picture = Image.fromarray(image)
            patches = np.stack([crop_face(picture, face.box, size=48) for face in alone])
            for a, b in zip(one.describe_patches(patches), two.describe_patches(patches), strict=True):
                assert np.array_equal(a, b), path.name
    assert found >= len(photos)
