"""Which face of an enrolment photo is the person's.

A photo with one dominant usable face is the person's. A photo with several usable faces (a group
photo, someone beside them) is resolved by the person's other photos: the face whose embedding agrees
with the normalised mean of those photos is theirs, when the agreement is clear: it reaches
``AGREEMENT`` and beats every other face by ``MARGIN``. Otherwise (the person's first photo, or two
faces that both match) the photo stays refused as ``multiple_faces``.

The levels are in the fused embedder's cosine scale (``building.networks.embedding_net``: 0.2 FaceNet + 0.8
dlib, where unrelated faces already score about 0.7). Measured on lfw_dev's enrolment photos: 67
photos have several usable faces; against the person's other photos the subject's face (the centred
face of an LFW photo) scored 0.862-0.971, every other face at most 0.849, and the smallest gap was
0.047. (With FaceNet alone the same photos gave 0.55-0.91, others at most 0.53, gaps from 0.19.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faceforge.core.faces import PhotoFaces, RejectReason

AGREEMENT = 0.80
MARGIN = 0.04


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
        if best >= AGREEMENT and best - runner_up >= MARGIN:
            choices[position] = FaceChoice(face, round(best, 4))
    return choices
