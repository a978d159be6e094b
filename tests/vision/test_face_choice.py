"""Enrolment photos with several faces: the person's other photos decide which face is theirs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from faceforge.core.dataset import image_files
from faceforge.core.faces import Box, DetectedFace, Face, Landmarks, PhotoFaces, RejectReason
from faceforge.serving.vision.face_choice import AGREEMENT, MARGIN, choose_faces, unrelated_level
from faceforge.serving.vision.pipeline import FacePipeline
from tests.conftest import FACES, LFW10


def _side_by_side(left: Path, right: Path) -> bytes:
    """Two real photos in one frame: two faces of the same size, as in a photo of two people."""
    first, second = Image.open(left).convert("RGB"), Image.open(right).convert("RGB")
    both = Image.new("RGB", (first.width + second.width, max(first.height, second.height)))
    both.paste(first, (0, 0))
    both.paste(second, (first.width, 0))
    buffer = io.BytesIO()
    both.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _analyse(pipeline: FacePipeline, photos: list[bytes]) -> list[PhotoFaces | None]:
    results = pipeline.analyze_many(photos, single_face=True)
    return [result if isinstance(result, PhotoFaces) else None for result in results]


def test_the_face_that_matches_the_persons_other_photos_is_chosen(pipeline: FacePipeline) -> None:
    colin, blair = image_files(LFW10 / "Colin_Powell"), image_files(LFW10 / "Tony_Blair")
    photos = [path.read_bytes() for path in colin[:3]]
    photos += [_side_by_side(blair[0], colin[3]), _side_by_side(colin[4], blair[1])]
    judged = _analyse(pipeline, photos)
    assert [photo.reasons if photo else None for photo in judged[3:]] == [[RejectReason.MULTIPLE_FACES]] * 2
    choices = choose_faces(judged)
    assert [(c.face, c.agreement) for c in choices[:3] if c] == [(0, None)] * 3
    for photo, choice, colin_on_the_right in ((judged[3], choices[3], True), (judged[4], choices[4], False)):
        assert photo is not None and choice is not None and choice.agreement is not None
        assert choice.agreement >= AGREEMENT
        centre = photo.faces[choice.face].detection.box.x + photo.faces[choice.face].detection.box.width / 2
        assert (centre > photo.width / 2) == colin_on_the_right  # Colin's face, not Blair's


def test_a_persons_first_photo_or_two_matching_faces_stay_refused(pipeline: FacePipeline) -> None:
    colin, blair = image_files(LFW10 / "Colin_Powell"), image_files(LFW10 / "Tony_Blair")
    alone = _analyse(pipeline, [_side_by_side(blair[0], colin[3])])
    assert choose_faces(alone) == [None]  # nothing else of this person to compare with
    photos = [path.read_bytes() for path in colin[:3]] + [_side_by_side(colin[5], colin[6])]
    judged = _analyse(pipeline, photos)
    assert choose_faces(judged)[3] is None  # both faces are Colin: which one is "the photo"?


def test_an_accepted_photo_uses_its_embedded_face_even_when_a_larger_one_was_refused() -> None:
    """The largest face of a photo can be refused for its detection score (a blurred poster) while a
    smaller face is the person's: the choice is the face that was embedded, not index 0."""
    poster = Face(
        DetectedFace(Box(0, 0, 200, 200), 0.5, Landmarks(((0.0, 0.0),) * 5)),
        reasons=[RejectReason.LOW_DETECTION_SCORE],
    )
    person = Face(DetectedFace(Box(300, 0, 120, 120), 0.99, Landmarks(((0.0, 0.0),) * 5)))
    person.embedding = np.full(4, 0.5, np.float32)
    photo = PhotoFaces(width=500, height=300, faces=[poster, person], reasons=[])
    (choice,) = choose_faces([photo])
    assert choice is not None and choice.face == 1 and choice.agreement is None


def test_a_group_photo_of_two_other_people_is_refused(pipeline: FacePipeline) -> None:
    """A tester added a photo of Obama and Biden to a person of three photos of George W. Bush (one of
    them with a second face): it was accepted ("this one matches the person's other photos", 0.81,
    Biden's face), and the next version named Biden as Bush. Unrelated faces reach 0.81 against a
    prototype often enough: the face must reach the level the population model puts strangers below."""
    names = {"George_W_Bush_0007", "George_W_Bush_0008", "George_W_Bush_0009"}
    bush = [path for path in image_files(LFW10 / "George_W_Bush") if path.stem in names]
    group = FACES / "multi" / "face_recognition_obama_and_biden.jpg"
    judged = _analyse(pipeline, [*(path.read_bytes() for path in bush), group.read_bytes()])
    assert [photo.reasons if photo else None for photo in judged] == [
        [],
        [],
        *[[RejectReason.MULTIPLE_FACES]] * 2,
    ]
    choices = choose_faces(judged)
    assert choices[2] is not None and choices[2].agreement is not None  # Bush beside someone: his face
    # The service's prototype: the photos with one face.
    references = np.stack(
        [photo.faces[0].embedding for photo in judged[:2] if photo and photo.faces[0].embedding is not None]
    )
    prototype = (references.mean(axis=0) / np.linalg.norm(references.mean(axis=0))).astype(np.float32)
    photo = judged[3]
    assert photo is not None
    scores = sorted(float(face.embedding @ prototype) for face in photo.faces if face.embedding is not None)
    assert (
        len(scores) == 2 and scores[1] >= AGREEMENT and scores[1] - scores[0] >= MARGIN
    )  # the old rule's yes
    assert scores[1] < unrelated_level(prototype, 2)
    assert choices[3] is None
