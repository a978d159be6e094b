"""Which face of an enrolment photo is the person's.

A photo with one dominant usable face is the person's. A photo with several usable faces (a group
photo, someone beside them) is resolved by the person's other photos: the face whose embedding agrees
with the normalised mean of those photos is theirs, when the agreement is clear: it beats every other
face by ``MARGIN``, and reaches a level an unrelated face reaches against this person's photos less
than once in ``1 / UNRELATED_CHANCE`` photos of that many faces (the population model's law of a
stranger's score against this prototype, ``core.model.population``), and never less than
``AGREEMENT``. Otherwise (the person's first photo, two faces that both match, or none that matches
surely) the photo stays refused as ``multiple_faces``: a refused photo costs the user another photo,
while a stranger's face taken as theirs gets that stranger named as them on every device.

The levels are in the fused embedder's cosine scale (``building.networks.embedding_net``: 0.2 FaceNet + 0.8
dlib, where unrelated faces already score about 0.7). Measured on lfw_dev's enrolment photos: 67
photos have several usable faces; against the person's other photos the subject's face (the centred
face of an LFW photo) scored 0.862-0.971, every other face at most 0.849, and the smallest gap was
0.047. (With FaceNet alone the same photos gave 0.55-0.91, others at most 0.53, gaps from 0.19.)
The population's level was 0.82-0.91 for those 67 prototypes: 64 of the subjects' faces reach it.
With ``AGREEMENT`` alone, a tester's group photo of two other people was enrolled for a person of
three photos (one face at 0.81, the other at 0.71), and that person was named on the other's face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from faceforge.core.faces import PhotoFaces, RejectReason
from faceforge.core.model.population import shipped_model

AGREEMENT = 0.80
MARGIN = 0.04
# As the population's pair calibration puts its midpoint where one different-person pair in 1,000
# scores above it.
UNRELATED_CHANCE = 0.001


# An accepted face is said to be unlike the person's other photos below the score an unrelated face
# reaches against them 1 time in 100 (``stranger_like_level``). On 80 lfw_dev people (each photo
# against their other five), 1.7 % of their own photos fall below it and 99.5 % of 800 strangers' do.
STRANGER_LIKE_CHANCE = 0.01


def stranger_like_level(prototype: npt.NDArray[np.float32]) -> float:
    """The score against ``prototype`` (a unit vector) that an unrelated face reaches with
    probability ``STRANGER_LIKE_CHANCE``, as the population model scores strangers."""
    means, deviations = shipped_model().score_moments(prototype[None, :].astype(np.float32))
    return float(means[0]) + NormalDist().inv_cdf(1.0 - STRANGER_LIKE_CHANCE) * float(deviations[0])


def unrelated_level(prototype: npt.NDArray[np.float32], faces: int) -> float:
    """The score against ``prototype`` (a unit vector) that none of ``faces`` unrelated faces reaches
    but with probability ``UNRELATED_CHANCE``, as the population model scores strangers."""
    means, deviations = shipped_model().score_moments(prototype[None, :].astype(np.float32))
    tail = NormalDist().inv_cdf(1.0 - UNRELATED_CHANCE / max(faces, 1))
    return max(AGREEMENT, float(means[0]) + tail * float(deviations[0]))


@dataclass(frozen=True, slots=True)
class FaceChoice:
    face: int  # index into the photo's faces
    agreement: float | None = None  # similarity to the person's other photos, when it decided


def _accepted_face(photo: PhotoFaces | None) -> FaceChoice | None:
    """An accepted photo's embedded face: usually the largest, but a larger face refused for its
    detection score (a blurred poster behind the person) comes first without an embedding."""
    if photo is None or photo.reasons:
        return None
    embedded = [i for i, face in enumerate(photo.faces) if face.embedding is not None]
    return FaceChoice(embedded[0]) if embedded else None


def choose_faces(
    photos: Sequence[PhotoFaces | None], others: Sequence[npt.NDArray[np.float32]] = ()
) -> list[FaceChoice | None]:
    """One choice per photo (``None``: refused). ``photos`` are one person's enrolment photos as
    ``analyze_image(single_face=True)`` judged them (``None`` for photos that did not decode);
    ``others`` are the person's embeddings already enrolled."""
    choices = [_accepted_face(photo) for photo in photos]
    references: list[npt.NDArray[np.float32]] = list(others)
    for photo, choice in zip(photos, choices, strict=True):
        if photo is not None and choice is not None:
            embedding = photo.faces[choice.face].embedding
            assert embedding is not None
            references.append(embedding)
    if not references:
        return choices
    prototype = np.mean(np.stack(references), axis=0)
    prototype /= max(float(np.linalg.norm(prototype)), 1e-12)
    for position, photo in enumerate(photos):
        if photo is None or photo.reasons != [RejectReason.MULTIPLE_FACES]:
            continue
        candidates = [(i, face.embedding) for i, face in enumerate(photo.faces) if face.embedding is not None]
        if not candidates:
            continue
        scored = sorted(((float(embedding @ prototype), i) for i, embedding in candidates), reverse=True)
        best, face = scored[0]
        runner_up = scored[1][0] if len(scored) > 1 else -1.0
        if best - runner_up >= MARGIN and best >= unrelated_level(prototype, len(candidates)):
            choices[position] = FaceChoice(face, round(best, 4))
    return choices
