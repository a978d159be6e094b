"""What the CompreFace- and DeepStack-compatible APIs share: subjects are people, faces are photos,
and similarities are the version's calibrated probabilities.

- A subject (CompreFace) or userid (DeepStack) is a person's name; when names repeat, the person
  registered first answers to it. Renaming the person renames the subject.
- A CompreFace ``image_id`` is a photo id written as a UUID (``00000000-0000-4000-8000-<12 hex>``),
  so it reads back without a lookup table.
- ``similarity`` (CompreFace) and ``confidence`` (DeepStack) are the probability the current
  version's head gives that person (``softmax(scale * [cosines - margins, threshold])``, unknown
  last): a
  stranger scores low, a known person high, and 0.5 is about where faceforge's own decision lies,
  so the thresholds clients already use (Double Take's 60-80 %, DeepStack's 0.67) follow it. (Raw
  cosine similarity would put strangers at 0.7-0.85 with this embedder: the complaint both
  projects' users file most.)
- Comparing two faces (verification, DeepStack's match) does not depend on who is enrolled: it is the
  shipped population model's probability that two faces of that cosine are one person
  (``PairCalibration``).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.core.errors import (
    IMAGE_TOO_LARGE,
    ImageNotFoundError,
    ModelNotReadyError,
    NotFoundError,
    RequestRejectedError,
)
from faceforge.core.faces import Face, RejectReason
from faceforge.core.model.population import shipped_model
from faceforge.core.records import Person
from faceforge.core.stored_text import never_stored
from faceforge.serving.services.identify import IdentifyService
from faceforge.serving.services.models import ModelService
from faceforge.serving.services.people import DUPLICATE, PeopleService, Upload
from faceforge.storage import people_store
from faceforge.storage.tables import MAX_ID

IMAGE_ID = re.compile(r"^00000000-0000-4000-8000-([0-9a-f]{12})$")


def image_uuid(photo_id: int) -> str:
    return str(uuid.UUID(f"00000000-0000-4000-8000-{photo_id:012x}"))


def photo_id_of(image_id: str) -> int | None:
    """The photo id an image id of ours names; ``None`` for one no id of ours can be (an id beyond
    the 32-bit columns answered 500 on PostgreSQL: "integer out of range")."""
    match = IMAGE_ID.match(image_id.strip().lower())
    photo_id = int(match.group(1), 16) if match else None
    return photo_id if photo_id is not None and 1 <= photo_id <= MAX_ID else None


class NoFaceError(RequestRejectedError):
    """CompreFace's words; ``image``: which of a request's two images (verification) had none."""

    def __init__(self, image: str | None = None) -> None:
        said = "No face is found in the given image"
        super().__init__("no_face", f"{said} ({image})" if image else said)


@dataclass(frozen=True, slots=True)
class RecognizedFace:
    box: dict[str, float]
    score: float
    landmarks: list[list[float]]
    subjects: list[tuple[str, float]]  # (name, calibrated probability), most probable first
    known: bool  # faceforge's own decision: the best subject reaches the threshold
    # CompreFace's execution_time, milliseconds: the photo's detection, and this face's share of the
    # embedding (every face of a photo is embedded in one batch).
    milliseconds: dict[str, float]
    embedding: list[float]


class CompatService:
    def __init__(self, people: PeopleService, models: ModelService, identify: IdentifyService) -> None:
        self.people = people
        self.models = models
        self.identify_service = identify

    # -- subjects ---------------------------------------------------------------------------------
    def subject(self, name: str) -> Person | None:
        if never_stored(name):
            return None  # no name holds one (and PostgreSQL refuses a NUL: a 500)
        with self.people.sessions() as session:
            return people_store.find_by_name(session, name=name.strip())

    def require_subject(self, name: str) -> Person:
        person = self.subject(name)
        if person is None:
            raise NotFoundError(f"Subject {name} is not found")
        return person

    def subjects(self) -> list[str]:
        with self.people.sessions() as session:
            names = [person.name for person in people_store.all_people(session)]
        return list(dict.fromkeys(names))  # one subject per name

    def add_subject(self, name: str) -> Person:
        result = self.people.add_to_name(name=name, uploads=[])
        assert result.person is not None
        return result.person

    def add_to_subject(self, name: str, uploads: list[Upload]) -> list[str]:
        """DeepStack's register: the photos join the subject (created when missing), all of them or,
        when one is refused, none (its answer has no place to say which were stored). Returns what
        is said of the accepted photos ("<photo>: <note>"), such as another person having the same
        photo: DeepStack's answer has only its message to say it in."""
        result = self.people.add_to_name(name=name, uploads=uploads, all_or_nothing=True)
        return [
            f"{verdict.filename or f'image {verdict.index + 1}'}: {verdict.message}"
            for verdict in result.photos
            if verdict.accepted and verdict.message
        ]

    def rename_subject(self, name: str, new_name: str) -> None:
        """Renaming onto an existing subject merges the two (CompreFace's rule)."""
        person = self.require_subject(name)
        target = self.subject(new_name)
        if target is None or target.id == person.id:
            self.people.update(person_id=person.id, changes={"name": new_name})
        else:
            self.people.merge(person_id=target.id, other_id=person.id)

    def delete_subject(self, name: str) -> Person:
        person = self.require_subject(name)
        self.people.delete(person_id=person.id)
        return person

    def delete_all_subjects(self) -> int:
        """Everyone, in one change; returns how many subjects (names) went."""
        with self.people.sessions() as session:
            everyone = people_store.all_people(session)
        deleted = set(self.people.delete_many([person.id for person in everyone]))
        return len({person.name for person in everyone if person.id in deleted})

    # -- faces (photos) ---------------------------------------------------------------------------
    def add_face(self, name: str, upload: Upload, *, min_detection: float | None = None) -> tuple[int, str]:
        """Store one photo of ``name`` (created if missing); ``(photo id, subject)``. A face detected
        less surely than ``min_detection`` is refused as no face, before anything is stored. A photo
        the subject has already answers with its id: CompreFace stores an example again, and a client
        that sends its photos again (a re-sync) met an error for each."""
        try:
            result = self.people.add_to_name(name=name, uploads=[upload], min_score=min_detection)
        except RequestRejectedError as error:
            verdicts = getattr(error, "verdicts", [])
            reasons = verdicts[0].reasons if verdicts else []
            if reasons == [DUPLICATE]:
                person = self.require_subject(name)
                with self.people.sessions() as session:
                    stored = people_store.photo_ids_by_sha256(session, person_id=person.id)
                    photo_id = stored.get(hashlib.sha256(upload.data).hexdigest())
                    score = None if photo_id is None else people_store.photo_score(session, photo_id=photo_id)
                if photo_id is not None:
                    # Judged as the photo would be if it were new: its stored face less sure than
                    # asked is no face, as it was for a client that sent it with this threshold first.
                    if min_detection is not None and score is not None and score < min_detection:
                        raise NoFaceError() from None
                    return photo_id, person.name
            if RejectReason.NO_FACE.value in reasons:
                raise NoFaceError() from None
            if RejectReason.MULTIPLE_FACES.value in reasons:
                raise RequestRejectedError(
                    "multiple_faces", "More than one face is found in the given image"
                ) from None
            if reasons:  # one photo, one cause: say it as the API's own error, not as a verdict list
                reason, message = reasons[0], verdicts[0].message or reasons[0]
                status = 413 if reason == IMAGE_TOO_LARGE else 400  # as every other route says it
                raise RequestRejectedError(reason, message, status=status) from None
            raise
        (verdict,) = result.photos
        assert result.person is not None and verdict.photo_id is not None
        return verdict.photo_id, result.person.name

    def faces_page(self, *, subject: str | None, page: int, size: int) -> tuple[list[tuple[str, str]], int]:
        person_id = None if subject is None else self.require_subject(subject).id
        with self.people.sessions() as session:
            rows, total = people_store.photos_page(
                session, person_id=person_id, offset=page * size, limit=size
            )
        return [(image_uuid(photo_id), name) for photo_id, name in rows], total

    def owner(self, image_id: str) -> tuple[int, int, str]:
        """``(photo id, person id, subject)`` of an image id; not found otherwise."""
        photo_id = photo_id_of(image_id)
        with self.people.sessions() as session:
            owner = None if photo_id is None else people_store.photo_owner(session, photo_id=photo_id)
        if photo_id is None or owner is None:
            raise ImageNotFoundError(f"image with id {image_id} not found")
        return photo_id, owner[0], owner[1]

    def delete_face(self, image_id: str) -> str:
        photo_id, person_id, name = self.owner(image_id)
        self.people.delete_photo(person_id=person_id, photo_id=photo_id)
        return name

    def delete_faces(self, subject: str | None) -> int:
        """Every photo of the subject's (or everyone's), in one change; returns how many went."""
        with self.people.sessions() as session:
            people = [self.require_subject(subject)] if subject else people_store.all_people(session)
        return len(self.people.delete_many([person.id for person in people], keep_people=True))

    def face_image(self, image_id: str) -> tuple[bytes, str]:
        photo_id, person_id, _ = self.owner(image_id)
        with self.people.sessions() as session:
            stored_name, content_type = people_store.photo_file(
                session, person_id=person_id, photo_id=photo_id
            )
        return self.people.files.path(stored_name).read_bytes(), content_type

    # -- recognition ------------------------------------------------------------------------------
    def recognize(
        self, data: bytes, *, limit: int, prediction_count: int, min_detection: float | None
    ) -> list[RecognizedFace]:
        """Faces of the photo, largest first, each with its most probable subjects. Raises
        ``ModelNotReadyError`` before the first version and ``NoFaceError`` without faces."""
        self.models.loaded(None)  # the "not ready" answer comes before any vision work
        _, found, seconds = self.identify_service.identify_timed(
            data, threshold=None, top_k=max(prediction_count, 1), version=None
        )
        milliseconds = {
            "detector": round(1000 * seconds.get("detector", 0.0), 1),
            "calculator": round(1000 * seconds.get("calculator", 0.0) / max(1, len(found)), 1),
        }
        faces = [face for face in found if min_detection is None or face.score >= min_detection]
        if not faces:
            raise NoFaceError()
        if limit > 0:
            faces = faces[:limit]
        return [
            RecognizedFace(
                box=face.box,
                score=face.score,
                landmarks=[list(p) for p in face.landmarks],
                subjects=[(c["name"], float(c["confidence"])) for c in face.candidates[:prediction_count]],
                known=face.match is not None,
                milliseconds=milliseconds,
                embedding=face.embedding,
            )
            for face in faces
        ]

    def faces_of(
        self,
        data: bytes,
        *,
        min_detection: float | None = None,
        seconds: dict[str, float] | None = None,
        embed: bool = True,
    ) -> list[Face]:
        """Every face of the photo, with its embedding unless not ``embed`` (verification, DeepStack's
        match; detection without CompreFace's ``calculator``), analysed under the vision gate as every
        other photo is. ``seconds`` adds up the analysis's stages (``detector``, ``calculator``), for
        CompreFace's ``execution_time``."""
        with self.people.gate.slot(self.people.pipeline.pixels_at_once([data])):
            photo = self.people.pipeline.analyze(data, single_face=False, embed=embed)
        if seconds is not None:
            for stage, spent in photo.seconds.items():
                seconds[stage] = seconds.get(stage, 0.0) + spent
        faces = [f for f in photo.faces if min_detection is None or f.detection.score >= min_detection]
        if not faces:
            raise NoFaceError()
        return faces

    def pair_probability(self, a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
        """How likely two faces are one person: the population model's calibration of one photo
        against another (``core.model.population``), the same whoever is enrolled."""
        return shipped_model().pair.probability(float(np.dot(a, b)))

    def stored_embedding(self, image_id: str) -> npt.NDArray[np.float32]:
        photo_id, _, _ = self.owner(image_id)
        with self.people.sessions() as session:
            data = people_store.photo_embedding(session, photo_id=photo_id, embedder=EMBEDDER_NAME)
        if data is None:
            raise ModelNotReadyError(f"image {image_id} is being embedded again after an upgrade")
        return np.frombuffer(data, dtype="<f4")
