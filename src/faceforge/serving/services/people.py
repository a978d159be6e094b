"""Enrolment: register people, add and delete photos, edit and delete people; each change that affects
recognition asks for a new model version in the same transaction."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session, sessionmaker

from faceforge.core.config import Settings
from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.core.errors import NotFoundError, RequestRejectedError
from faceforge.core.faces import PhotoFaces, RejectReason
from faceforge.core.model.population import shipped_model
from faceforge.core.records import Person, StoredPhoto
from faceforge.core.stored_text import has_lone_surrogate, never_stored
from faceforge.serving.services.photo_sizes import SizedPhotos
from faceforge.serving.services.vision_gate import VisionGate
from faceforge.serving.vision.decode import photo_kind
from faceforge.serving.vision.face_choice import choose_faces, stranger_like_level
from faceforge.serving.vision.pipeline import FacePipeline, PhotoError
from faceforge.storage import people_store, strangers_store
from faceforge.storage.people_store import request_training
from faceforge.storage.photo_files import PhotoFiles
from faceforge.storage.tables import COLUMN_WIDTHS
from faceforge.storage.version_store import VersionStore

if TYPE_CHECKING:
    from faceforge.serving.services.models import LoadedModel

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 128

_Change = TypeVar("_Change")


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str | None
    data: bytes


def too_large_file(filename: str | None, max_bytes: int, *, others: bool = False) -> RequestRejectedError:
    """413 ``file_too_large``, the limit in megabytes (a tester read "larger than 15728640 bytes");
    with ``others`` (a request of several photos), that none of them was stored either: they were
    not refused, only not read."""
    megabytes = max_bytes / 1_048_576
    limit = (
        f"{max_bytes:,} bytes"
        if megabytes < 1
        else f"{megabytes:,.0f} MB"
        if megabytes == round(megabytes)
        else f"{megabytes:,.1f} MB"
    )
    said = f"{filename or 'a photo'} is larger than the limit of {limit} per photo"
    if others:
        said += "; no photo of this request was stored: send it smaller, or leave it out"
    return RequestRejectedError("file_too_large", said, status=413)


@dataclass(slots=True)
class PhotoVerdict:
    index: int
    filename: str | None
    accepted: bool
    reasons: list[str]
    message: str | None = None
    photo_id: int | None = None
    box: dict[str, float] | None = None
    score: float | None = None


@dataclass(slots=True)
class ChangeResult:
    person: Person | None
    photos: list[PhotoVerdict] = field(default_factory=list)
    training_requested: int | None = None  # the training request counter after this change, if any


class PhotosRejectedError(RequestRejectedError):
    """Photos were sent and none was accepted: nothing is stored, and every photo's verdict says why.
    With ``all_or_nothing``, some were acceptable but one was not, and the caller asked for all of
    them or none (DeepStack's register, whose answer has no place for a verdict per photo)."""

    def __init__(self, verdicts: list[PhotoVerdict], *, all_or_nothing: bool = False) -> None:
        refused = [v for v in verdicts if not v.accepted and not (all_or_nothing and DUPLICATE in v.reasons)]
        reasons = "; ".join(
            f"{v.filename or f'photo {v.index + 1}'}: {v.message or ', '.join(v.reasons)}" for v in refused
        )
        message = (
            f"{len(refused)} of {len(verdicts)} photos refused, so none was stored ({reasons})"
            if all_or_nothing
            else f"no photo was accepted ({reasons})"
        )
        super().__init__("photos_rejected", message, status=422)
        self.verdicts = verdicts


_REASON_MESSAGES = {
    "no_face": "no face was found",
    "multiple_faces": (
        "several faces of similar size, and no other photo of theirs tells which face is theirs; "
        "each photo needs one clear face"
    ),
    "face_too_small": "the face is too small",
    "low_detection_score": "the face is not clear enough",
}
# Where the person's other photos were there to compare with ("no other photo of theirs tells which"
# read as untrue to a tester whose person had three).
_COMPARED_MESSAGES = {
    "multiple_faces": (
        "several faces of similar size, and none matches the person's other photos surely enough to "
        "tell which is theirs; each photo needs one clear face"
    ),
}


# One face of one photo embedded twice agrees to float rounding (the int8 graph's included); two faces
# of a group photo are two people, far below.
SAME_FACE_COSINE = 0.99
DUPLICATE = "duplicate_photo"  # the verdict's reason for bytes the owner's photos already have
STRANGER_PHOTO = "stranger_photo"  # a person's photo whose bytes a stranger's photos have
ENROLLED_PHOTO = "enrolled_photo"  # a stranger's photo whose bytes a person's photos have


# Finds which of a request's photos (by sha256) the other collection holds: a person's photo sent as
# a stranger's, or a stranger's as a person's. Returns the refusal (reason, message) of each.
HeldElsewhere = Callable[[list[str]], dict[str, tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class PhotoOwner:
    """Whose photos are stored (a person's or a stranger's), in the caller's session: their stored
    embeddings (which tell whose face a group photo's is), their stored photos' ids by sha256 (the
    same bytes are stored once), how a photo's row is added (``add_photo(stored file name, columns)
    -> photo id``), how the owner's row and the photos about to be stored (sha256) are locked until
    the transaction ends (``NotFoundError`` if the owner is gone), and which of those photos the
    other collection holds (``held_elsewhere``, read in the same session)."""

    embeddings: Callable[[], list[bytes]]
    known: Callable[[], dict[str, int]]
    add_photo: Callable[[str, dict[str, Any]], int]
    lock: Callable[[list[str]], None]
    held_elsewhere: HeldElsewhere


@dataclass(slots=True)
class _Accepted:
    """An accepted photo whose row is not written yet: its verdict (which gets the row's id), its
    file's name and the row's columns."""

    verdict: PhotoVerdict
    fields: dict[str, Any]
    stored_name: str = ""


def note_faces_alike(
    prepared: PreparedPhotos, faces: list[tuple[int, bytes]], note: Callable[[int, float], str]
) -> None:
    """Add ``note(owner, similarity)`` to each accepted photo whose face looks like one of ``faces``
    (``(owner id, embedding)``, the other collection's): alike at the population's pair midpoint or
    above, where two photos are as likely one person as two."""
    if not prepared.accepted or not faces:
        return
    owners = [owner for owner, _ in faces]
    matrix = np.stack([np.frombuffer(embedding, "<f4") for _, embedding in faces])
    alike = shipped_model().pair.midpoint
    for item in prepared.accepted:
        similarities = matrix @ np.frombuffer(item.fields["embedding"], "<f4")
        best = int(np.argmax(similarities))
        if similarities[best] < alike:
            continue
        said = note(owners[best], float(similarities[best]))
        item.verdict.message = f"{item.verdict.message}; {said}" if item.verdict.message else said


@dataclass(slots=True)
class PreparedPhotos:
    """Every photo's verdict, with the accepted photos' files already on disk (``names``)."""

    verdicts: list[PhotoVerdict]
    accepted: list[_Accepted]

    @property
    def names(self) -> list[str]:
        return [item.stored_name for item in self.accepted]

    def lock(self, session: Session) -> None:
        """Lock the accepted photos (``people_store.lock_photos``): the first thing a write
        transaction that stores them does, before it creates or locks their owner."""
        people_store.lock_photos(session, [item.fields["sha256"] for item in self.accepted])


def _judge(
    analysed: list[tuple[Upload, PhotoFaces | PhotoError]],
    stored: list[bytes],
    known: dict[str, int],
    elsewhere: dict[str, tuple[str, str]],
    min_score: float | None,
) -> tuple[list[PhotoVerdict], list[tuple[_Accepted, Upload]]]:
    digests = [_sha256(upload.data) for upload, _ in analysed]
    first_of: dict[str, int] = {}
    again: list[tuple[str, str] | None] = []
    for index, digest in enumerate(digests):
        if digest in known:
            again.append((DUPLICATE, f"this photo is already stored for them (photo {known[digest]})"))
        elif digest in elsewhere:
            again.append(elsewhere[digest])
        elif digest in first_of:
            again.append((DUPLICATE, f"the same file as photo {first_of[digest] + 1} of this request"))
        else:
            again.append(None)
            first_of[digest] = index
    photos = [
        None if isinstance(result, PhotoError) or repeat is not None else result
        for (_, result), repeat in zip(analysed, again, strict=True)
    ]
    choices = choose_faces(photos, [np.frombuffer(data, dtype="<f4") for data in stored])
    # Whether the person had photos to tell their face by (stored, or one face alone in this request).
    compared = bool(stored) or any(choice is not None and choice.agreement is None for choice in choices)
    verdicts: list[PhotoVerdict] = []
    accepted: list[tuple[_Accepted, Upload]] = []
    for index, ((upload, result), choice) in enumerate(zip(analysed, choices, strict=True)):
        if isinstance(result, PhotoError):
            verdicts.append(PhotoVerdict(index, upload.filename, False, [result.code], result.message))
            continue
        refusal = again[index]
        if refusal is not None:
            verdicts.append(PhotoVerdict(index, upload.filename, False, [refusal[0]], refusal[1]))
            continue
        if choice is None:
            reasons = [str(r) for r in result.reasons]
            said = _REASON_MESSAGES if not compared else _REASON_MESSAGES | _COMPARED_MESSAGES
            message = "; ".join(said.get(r, r) for r in reasons)
            verdicts.append(PhotoVerdict(index, upload.filename, False, reasons, message))
            continue
        face = result.faces[choice.face]
        assert face.embedding is not None
        if min_score is not None and face.detection.score < min_score:
            message = f"no face detected as surely as asked (score {face.detection.score:.3f})"
            verdicts.append(
                PhotoVerdict(index, upload.filename, False, [RejectReason.NO_FACE.value], message)
            )
            continue
        _, content_type = photo_kind(upload.data)
        box = {
            "x": face.detection.box.x,
            "y": face.detection.box.y,
            "width": face.detection.box.width,
            "height": face.detection.box.height,
        }
        fields: dict[str, Any] = {
            "sha256": digests[index],
            "content_type": content_type,
            "size_bytes": len(upload.data),
            "width": result.width,
            "height": result.height,
            "box": box,
            "landmarks": [list(p) for p in face.detection.landmarks.points],
            "score": face.detection.score,
            "embedder": EMBEDDER_NAME,
            "embedding": face.embedding.astype("<f4").tobytes(),
        }
        note = (
            None
            if choice.agreement is None
            else "several faces; this one matches the person's other photos "
            f"(similarity {choice.agreement:.2f})"
        )
        verdict = PhotoVerdict(index, upload.filename, True, [], note, None, box, face.detection.score)
        verdicts.append(verdict)
        accepted.append((_Accepted(verdict, fields), upload))
    return verdicts, accepted


def prepare_photos(
    owner: PhotoOwner | None,
    analysed: list[tuple[Upload, PhotoFaces | PhotoError]],
    files: PhotoFiles,
    elsewhere: HeldElsewhere,
    min_score: float | None = None,
) -> PreparedPhotos:
    """Before the write transaction: give every photo its verdict (``owner`` read in a read session,
    ``None`` for someone new) and write the accepted photos' files, fsynced. The transaction that
    stores their rows (``store_prepared``) then holds the write lock for a few inserts only; if it
    fails the files are removed, and the worker's orphan sweep takes those of a process killed in
    between. Photos the other collection holds (``elsewhere``) are refused: the same face as a person
    and as a stranger would make that person unnameable. A face detected less surely than
    ``min_score`` counts as no face. Raises
    ``PhotosRejectedError`` when photos were sent and none was accepted (nothing is written)."""
    stored, known = ([], {}) if owner is None else (owner.embeddings(), owner.known())
    digests = [_sha256(upload.data) for upload, _ in analysed]
    verdicts, accepted = _judge(analysed, stored, known, elsewhere(digests), min_score)
    if verdicts and not accepted:
        raise PhotosRejectedError(verdicts)
    written: list[_Accepted] = []
    try:
        for item, upload in accepted:
            extension, _ = photo_kind(upload.data)
            item.stored_name = files.save(upload.data, extension)
            written.append(item)
    except BaseException:
        files.delete([item.stored_name for item in written])
        raise
    return PreparedPhotos(verdicts, written)


def _refused_but_duplicates(verdicts: list[PhotoVerdict]) -> bool:
    """Whether a photo was refused for another reason than that its owner has it already."""
    return any(not v.accepted and DUPLICATE not in v.reasons for v in verdicts)


def store_prepared(
    owner: PhotoOwner, prepared: PreparedPhotos, unused: list[str], *, all_or_nothing: bool = False
) -> list[PhotoVerdict]:
    """In the write transaction: the rows of ``prepared``'s accepted photos. A photo whose bytes a
    concurrent request stored meanwhile, for the owner or in the other collection, is refused as
    ``prepare_photos`` would have (its file put in ``unused``): the photos are locked first, so of two
    requests storing one photo at once the second sees the first's row. Raises
    ``PhotosRejectedError`` when photos were sent and none was stored, or, ``all_or_nothing``, when
    any was refused but for being the owner's already (rolling the whole change back)."""
    known: dict[str, int] = {}
    held: dict[str, tuple[str, str]] = {}
    if prepared.accepted:
        digests = [item.fields["sha256"] for item in prepared.accepted]
        owner.lock(digests)
        known = owner.known()
        held = owner.held_elsewhere(digests)
    for item in prepared.accepted:
        digest = item.fields["sha256"]
        earlier = known.get(digest)
        if earlier is None and digest not in held:
            item.verdict.photo_id = owner.add_photo(item.stored_name, item.fields)
            continue
        reason, message = (
            (DUPLICATE, f"this photo is already stored for them (photo {earlier})")
            if earlier is not None
            else held[digest]
        )
        item.verdict.accepted, item.verdict.reasons, item.verdict.message = False, [reason], message
        item.verdict.box = item.verdict.score = None
        unused.append(item.stored_name)
    verdicts = prepared.verdicts
    if verdicts and not any(v.accepted for v in verdicts):
        raise PhotosRejectedError(verdicts)
    if all_or_nothing and _refused_but_duplicates(verdicts):
        raise PhotosRejectedError(verdicts, all_or_nothing=True)
    return verdicts


def write_with_files(
    sessions: sessionmaker[Session],
    files: PhotoFiles,
    change: Callable[[Session, list[str]], _Change],
    written: list[str],
) -> _Change:
    """Run ``change`` in one write transaction. ``written`` are the files already on disk whose rows
    it stores: all are removed if it fails; the files ``change`` puts in the list it is given (not
    needed after all) are removed once it commits."""
    unused: list[str] = []
    try:
        with sessions.begin() as session:
            result = change(session, unused)
    except BaseException:
        files.delete(written)
        raise
    files.delete(unused)
    return result


UNKNOWN_NAME = "unknown"  # the models' label and DeepStack's userid for a face not known
DOT_SEGMENTS = (".", "..")  # names an address cannot carry (RFC 3986's dot segments)


def refuse_reserved(name: str) -> None:
    """Names no new person may take. A person who has one from before keeps it (sent again
    unchanged, it is not refused: their position could no longer be edited)."""
    if name in DOT_SEGMENTS:
        # CompreFace's subject routes put the name in the path, where every HTTP client removes "."
        # and "..": DELETE .../subjects/. went out as DELETE .../subjects, deleting everyone.
        raise RequestRejectedError(
            "name_invalid", f'"{name}" cannot be a name: in an address it means a folder, not a person'
        )
    if name.casefold() == UNKNOWN_NAME:
        # DeepStack's recognize answers it for strangers, as every model's last label is "unknown": a
        # person of that name could never be told from a stranger (a tester's).
        raise RequestRejectedError(
            "reserved_name",
            f'"{name}" is what faceforge says of a face it does not know (DeepStack\'s userid, the '
            "models' last label): choose another name",
        )


def _clean_text(value: str | None, *, field_name: str, limit: int, required: bool) -> str | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise RequestRejectedError(f"{field_name}_required", f"{field_name.capitalize()} is required")
        return None
    if len(text) > limit:
        raise RequestRejectedError(
            f"{field_name}_too_long", f"{field_name} is longer than {limit} characters"
        )
    if has_lone_surrogate(text):
        raise RequestRejectedError(
            f"{field_name}_invalid", f"{field_name} must not contain a lone surrogate (\\ud800-\\udfff)"
        )
    # Names become model labels: one per line in labels.txt, so no line breaks or other controls.
    if never_stored(text, line_breaks=True):
        raise RequestRejectedError(
            f"{field_name}_invalid", f"{field_name} must not contain line breaks or control characters"
        )
    return text


class PeopleService:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        pipeline: FacePipeline,
        gate: VisionGate,
        on_change: Callable[[], None] = lambda: None,
        current_model: Callable[[], LoadedModel | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.current_model = current_model  # the version identify names faces with, people deleted left out
        self.sessions = sessions
        self.pipeline = pipeline
        self.gate = gate
        self.sized = SizedPhotos(pipeline, gate)  # photos and face thumbnails shown by the dashboard
        self.files = PhotoFiles(settings.files_dir / "photos")
        self.versions = VersionStore(settings.models_dir)
        self.on_change = on_change

    # -- validation -------------------------------------------------------------------------------
    def clean_name(self, name: str | None, *, reserved_ok: bool = False) -> str:
        """A name to store; ``reserved_ok``: the caller refuses a reserved one itself, where it is
        not the name an existing person already has (``refuse_reserved``)."""
        cleaned = _clean_text(name, field_name="name", limit=self._length_limit("name"), required=True)
        assert cleaned is not None
        if not reserved_ok:
            refuse_reserved(cleaned)
        return cleaned

    def clean_optional(self, value: str | None, field_name: str) -> str | None:
        return _clean_text(value, field_name=field_name, limit=self._length_limit(field_name), required=False)

    def _length_limit(self, field_name: str) -> int:
        """``MAX_NAME_LENGTH``, within the column that stores the field (a raised limit cannot widen
        it: PostgreSQL refused the longer text, a 500)."""
        return min(self.settings.limits.max_name_length, COLUMN_WIDTHS[field_name])

    def check_uploads(self, uploads: list[Upload]) -> None:
        limits = self.settings.limits
        if len(uploads) > limits.max_photos_per_request:
            raise RequestRejectedError(
                "too_many_photos", f"at most {limits.max_photos_per_request} photos per request", status=413
            )
        for upload in uploads:
            if len(upload.data) > limits.max_file_bytes:
                raise too_large_file(upload.filename, limits.max_file_bytes)

    # -- photo analysis ---------------------------------------------------------------------------
    def analyse(self, uploads: list[Upload]) -> list[tuple[Upload, PhotoFaces | PhotoError]]:
        photos = [u.data for u in uploads]
        with self.gate.slot(self.pipeline.pixels_at_once(photos)):
            results = self.pipeline.analyze_many(photos, single_face=True)
        return list(zip(uploads, results, strict=True))

    def _owner(self, session: Session, person_id: int) -> PhotoOwner:
        return PhotoOwner(
            embeddings=lambda: people_store.person_embeddings(
                session, person_id=person_id, embedder=EMBEDDER_NAME
            ),
            known=lambda: people_store.photo_ids_by_sha256(session, person_id=person_id),
            add_photo=lambda name, fields: people_store.add_photo(
                session, person_id=person_id, stored_name=name, fields=fields
            ),
            lock=lambda digests: self._lock(session, person_id, digests),
            held_elsewhere=lambda digests: self._held_in(session, digests),
        )

    @staticmethod
    def _lock(session: Session, person_id: int, digests: list[str]) -> None:
        people_store.lock_photos(session, digests)  # again, if the change did: locks are re-entrant
        people_store.lock_person(session, person_id=person_id)

    def _note_upload(self, prepared: PreparedPhotos, person_id: int | None) -> None:
        """What is said of accepted photos for ``person_id`` (``None``: someone new), before they are
        stored: a face like a collected stranger's, a photo another person has, a face the current
        version names as someone else."""
        self._note_strangers_alike(prepared)
        copies = self._note_other_peoples_copies(prepared, person_id)
        self._note_named_as_others(prepared, person_id, copies)
        self._note_unlike_their_others(prepared, person_id)

    def _note_unlike_their_others(self, prepared: PreparedPhotos, person_id: int | None) -> None:
        """Say on each accepted photo, not noted otherwise, whose face matches the person's other
        photos (stored, and the others of this request) no better than a stranger's face would
        (``stranger_like_level``): testers added a stranger's photo, and a group photo whose largest
        face was someone else's, to a person, both accepted without a word. A note, not a refusal:
        the person's photos may be few or poor, and a new person's first photo has none to match."""
        if not prepared.accepted:
            return
        stored: list[npt.NDArray[np.float32]] = []
        if person_id is not None:
            with self.sessions() as session:
                rows = people_store.person_embeddings(session, person_id=person_id, embedder=EMBEDDER_NAME)
            stored = [np.frombuffer(row, "<f4") for row in rows]
        new = [np.frombuffer(item.fields["embedding"], "<f4") for item in prepared.accepted]
        for position, item in enumerate(prepared.accepted):
            others = stored + new[:position] + new[position + 1 :]
            if item.verdict.message or not others or len(others[0]) != len(new[position]):
                continue
            prototype = np.mean(np.stack(others), axis=0)
            prototype /= max(float(np.linalg.norm(prototype)), 1e-12)
            score = float(new[position] @ prototype)
            if score < stranger_like_level(prototype.astype(np.float32)):
                item.verdict.message = (
                    f"this face matches the person's other photos no better than a stranger's would "
                    f"(similarity {score:.2f}): check that it shows them; if not, delete it"
                )

    def _note_named_as_others(
        self, prepared: PreparedPhotos, person_id: int | None, copies: set[str]
    ) -> None:
        """Say on each accepted photo whose face the current version names as someone else: it is
        filed under the wrong person, or they are one person under two names (a tester added a photo
        of Venus Williams to Tom Hanks: accepted without a word, while identify named her at 0.99).
        The version's own decision, threshold and margins included, so a face is said to be someone's
        exactly when identify would name it so; a photo whose bytes another person has is said so
        already (``copies``). A note, never a refusal: a new person is named as someone else as often
        as the version accepts a stranger."""
        if not prepared.accepted:
            return
        try:
            model = self.current_model()
        except Exception:  # the upload does not fail for its note (a damaged version, a read error)
            log.exception("no note of faces the current version names")
            return
        if model is None or not model.people:
            return
        faces = np.stack([np.frombuffer(item.fields["embedding"], "<f4") for item in prepared.accepted])
        if faces.shape[1] != model.head.prototypes.shape[1]:
            return  # a version of an earlier embedder, while photos are embedded again
        matches = model.head.predict(faces)
        ids = sorted({cast(int, model.people[m.index]["person_id"]) for m in matches if m.index is not None})
        with self.sessions() as session:
            names = people_store.names_of(session, ids) if ids else {}
        for item, match in zip(prepared.accepted, matches, strict=True):
            if match.index is None or item.fields["sha256"] in copies:
                continue
            named = model.people[match.index]
            if named["person_id"] == person_id:
                continue
            # Their name now: the version's may be from before a rename.
            name = names.get(cast(int, named["person_id"]), str(named["name"]))
            said = (
                f"version {model.version} names this face as {name} (person "
                f"{named['person_id']}, confidence {match.confidence:.2f}): if it shows them, delete it "
                "here and add it to them; if they are one person, merge them"
            )
            item.verdict.message = f"{item.verdict.message}; {said}" if item.verdict.message else said

    def _note_strangers_alike(self, prepared: PreparedPhotos) -> None:
        """Say on each accepted photo whose face looks like a collected stranger's: that stranger's
        photos would keep this person from being named (a tester enrolled someone already collected
        as a stranger, and nothing said why they were never named after). Alike: at least the
        population's pair midpoint, where two photos are as likely one person as two."""
        if not prepared.accepted:
            return
        with self.sessions() as session:
            rows = strangers_store.embeddings_with_strangers(session, embedder=EMBEDDER_NAME)
        if not rows:
            return

        def said(stranger_id: int, similarity: float) -> str:
            # By their note too, as the Strangers page shows them ("stranger 1" alone sent a tester
            # looking for a number the page never showed).
            try:
                with self.sessions() as session:
                    note = strangers_store.get_stranger(session, stranger_id=stranger_id).note
            except NotFoundError:  # deleted since the embeddings were read: the upload goes on
                note = None
            who = f"stranger {stranger_id}" + (f' ("{note}")' if note else "")
            return (
                f"this face looks like the photos of {who} (similarity {similarity:.2f}): "
                "while that stranger is kept, this person is named mostly on faces more like their "
                "photos than the stranger's; if they are that stranger, delete the stranger, or they "
                "will hardly be named"
            )

        note_faces_alike(prepared, rows, said)

    def _note_other_peoples_copies(self, prepared: PreparedPhotos, person_id: int | None) -> set[str]:
        """Say on each accepted photo whose very bytes another person has with the same face taken:
        one of the two is filed under the wrong name, or they are one person under two names. The
        next version flags the pair and leaves it out of its calibration; said here, at the upload,
        where the mistake is made (a tester added a photo to the wrong person and heard nothing until
        a version was held back). Another face of the same group photo is another person's: no note."""
        noted: set[str] = set()
        if not prepared.accepted:
            return noted
        with self.sessions() as session:
            stored = people_store.faces_with_photos(
                session, [item.fields["sha256"] for item in prepared.accepted], embedder=EMBEDDER_NAME
            )
        for item in prepared.accepted:
            face = np.frombuffer(item.fields["embedding"], "<f4")
            holders = sorted(
                {
                    (other_id, name)
                    for digest, other_id, name, embedding in stored
                    if digest == item.fields["sha256"]
                    and other_id != person_id
                    and embedding is not None
                    # The same face of the same bytes embeds alike to rounding; another face, not.
                    and float(np.dot(np.frombuffer(embedding, "<f4"), face)) >= SAME_FACE_COSINE
                }
            )
            if not holders:
                continue
            # Every other holder is named: a tester's photo held by two others heard only of the first.
            named = [f"{name} (person {other_id})" for other_id, name in holders]
            who = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
            said = (
                f"the same photo is stored for {who}: if they are one "
                "person, merge them; if not, delete it from whoever it does not show"
            )
            item.verdict.message = f"{item.verdict.message}; {said}" if item.verdict.message else said
            noted.add(item.fields["sha256"])
        return noted

    def _held_by_strangers(self, digests: list[str]) -> dict[str, tuple[str, str]]:
        with self.sessions() as session:
            return self._held_in(session, digests)

    @staticmethod
    def _held_in(session: Session, digests: list[str]) -> dict[str, tuple[str, str]]:
        """Of ``digests``, the photos a stranger holds, with the refusal of each."""
        holders = strangers_store.strangers_with_photos(session, digests)
        return {
            digest: (
                STRANGER_PHOTO,
                f"this photo is stored for stranger {stranger_id}; "
                "delete it there first if it is of this person",
            )
            for digest, stranger_id in holders.items()
        }

    def _write(
        self, change: Callable[[Session, list[str]], ChangeResult], written: list[str] | None = None
    ) -> ChangeResult:
        """Run ``change`` in one write transaction (``write_with_files``)."""
        result = write_with_files(self.sessions, self.files, change, written or [])
        if result.training_requested is not None:
            self.on_change()
        return result

    # -- use cases --------------------------------------------------------------------------------
    def register(
        self,
        *,
        name: str | None,
        position: str | None,
        external_id: str | None,
        uploads: list[Upload],
        train: bool = True,
    ) -> ChangeResult:
        """Create a person with photos. ``train=False`` (bulk imports) stores them without asking for
        a model version; the importer asks once at the end (``request_training``)."""
        clean_name = self.clean_name(name)
        clean_position = self.clean_optional(position, "position")
        clean_external = self.clean_optional(external_id, "external_id")
        self.check_uploads(uploads)
        prepared = prepare_photos(None, self.analyse(uploads), self.files, self._held_by_strangers)
        self._note_upload(prepared, None)

        def change(session: Session, unused: list[str]) -> ChangeResult:
            prepared.lock(session)
            person_id = people_store.create_person(
                session, name=clean_name, position=clean_position, external_id=clean_external
            )
            verdicts = store_prepared(self._owner(session, person_id), prepared, unused)
            # A person without photos is allowed (photos can come later) and changes no model.
            requested = request_training(session) if verdicts and train else None
            return ChangeResult(people_store.get_person(session, person_id=person_id), verdicts, requested)

        return self._write(change, prepared.names)

    def add_to_name(
        self,
        *,
        name: str | None,
        uploads: list[Upload],
        min_score: float | None = None,
        all_or_nothing: bool = False,
    ) -> ChangeResult:
        """Add photos to the earliest person called ``name``, created when there is none (the compatible
        APIs' subjects). Looking up and creating are one transaction, serialised per name, so concurrent
        calls for a new name make one person. Faces detected less surely than ``min_score`` count as no
        face; when no photo is accepted nothing is stored, not even a new person. ``all_or_nothing``:
        nothing is stored when any photo is refused (one the person has already aside)."""
        clean_name = self.clean_name(name, reserved_ok=True)
        if clean_name.casefold() == UNKNOWN_NAME or clean_name in DOT_SEGMENTS:
            with self.sessions() as session:  # a subject of that name from before is still added to
                if people_store.find_by_name(session, name=clean_name) is None:
                    refuse_reserved(clean_name)
        self.check_uploads(uploads)
        analysed = self.analyse(uploads) if uploads else []
        with self.sessions() as session:
            known = people_store.find_by_name(session, name=clean_name)
            owner = None if known is None else self._owner(session, known.id)
            prepared = prepare_photos(owner, analysed, self.files, self._held_by_strangers, min_score)
        if all_or_nothing and _refused_but_duplicates(prepared.verdicts) and prepared.accepted:
            self.files.delete(prepared.names)
            raise PhotosRejectedError(prepared.verdicts, all_or_nothing=True)
        self._note_upload(prepared, None if known is None else known.id)

        def change(session: Session, unused: list[str]) -> ChangeResult:
            prepared.lock(session)
            people_store.lock_name(session, name=clean_name)
            found = people_store.find_by_name(session, name=clean_name)
            person_id = (
                found.id
                if found is not None
                else people_store.create_person(session, name=clean_name, position=None, external_id=None)
            )
            verdicts = store_prepared(
                self._owner(session, person_id), prepared, unused, all_or_nothing=all_or_nothing
            )
            requested = request_training(session) if verdicts else None
            return ChangeResult(people_store.get_person(session, person_id=person_id), verdicts, requested)

        return self._write(change, prepared.names)

    def add_photos(self, *, person_id: int, uploads: list[Upload], train: bool = True) -> ChangeResult:
        if not uploads:
            raise RequestRejectedError("photos_required", "at least one photo is required")
        self.check_uploads(uploads)
        with self.sessions() as session:
            people_store.get_person(session, person_id=person_id)  # 404 before the expensive part
        analysed = self.analyse(uploads)
        with self.sessions() as session:
            prepared = prepare_photos(
                self._owner(session, person_id), analysed, self.files, self._held_by_strangers
            )
        self._note_upload(prepared, person_id)

        def change(session: Session, unused: list[str]) -> ChangeResult:
            prepared.lock(session)
            verdicts = store_prepared(self._owner(session, person_id), prepared, unused)
            requested = request_training(session) if train else None
            return ChangeResult(people_store.get_person(session, person_id=person_id), verdicts, requested)

        return self._write(change, prepared.names)

    def update(self, *, person_id: int, changes: dict[str, str | None]) -> ChangeResult:
        cleaned: dict[str, str | None] = {}
        for key, value in changes.items():
            cleaned[key] = (
                self.clean_name(value, reserved_ok=True) if key == "name" else self.clean_optional(value, key)
            )

        def change(session: Session, _unused: list[str]) -> ChangeResult:
            people_store.lock_person(session, person_id=person_id)
            before = people_store.get_person(session, person_id=person_id)
            if "name" in cleaned and cleaned["name"] != before.name:
                refuse_reserved(cast(str, cleaned["name"]))
            person = people_store.update_person(session, person_id=person_id, changes=cleaned)
            # Names and positions are part of each model's roster and labels; one sent again as it
            # was changes no model (each such PATCH trained and published a version: a tester's).
            changed = {key for key, value in cleaned.items() if getattr(before, key) != value}
            affects = person.photo_count > 0 and bool({"name", "position"} & changed)
            return ChangeResult(person, [], request_training(session) if affects else None)

        return self._write(change)

    def delete(self, *, person_id: int) -> ChangeResult:
        removed: list[str] = []

        def change(session: Session, _unused: list[str]) -> ChangeResult:
            removed.extend(people_store.delete_person(session, person_id=person_id))
            return ChangeResult(None, [], request_training(session) if removed else None)

        try:
            result = self._write(change)
        finally:  # a commit that failed may still have happened: a needless stamp costs one read
            self._removed_people()
        self.files.delete(removed)  # only after the rows are gone for good
        return result

    def delete_many(self, person_ids: Sequence[int], *, keep_people: bool = False) -> list[int]:
        """Delete these people (or, with ``keep_people``, every photo of theirs) in one transaction:
        all or nothing. One already gone (another request deleted them meanwhile) is left out, not
        an error. Returns a person's id for each deletion: once per person, or once per photo with
        ``keep_people``."""
        removed: list[str] = []
        counted: list[int] = []

        def change(session: Session, _unused: list[str]) -> ChangeResult:
            removed.clear()
            counted.clear()
            for person_id in person_ids:
                try:
                    people_store.lock_person(session, person_id=person_id)
                except NotFoundError:
                    continue
                if keep_people:
                    photos = people_store.list_photos(session, person_id=person_id)
                    for photo in photos:
                        removed.append(
                            people_store.delete_photo(session, person_id=person_id, photo_id=photo.id)
                        )
                    counted.extend([person_id] * len(photos))
                else:
                    removed.extend(people_store.delete_person(session, person_id=person_id))
                    counted.append(person_id)
            return ChangeResult(None, [], request_training(session) if removed else None)

        try:
            self._write(change)
        finally:
            if not keep_people:
                self._removed_people()
        self.files.delete(removed)  # only after the rows are gone for good
        return counted

    def delete_photo(self, *, person_id: int, photo_id: int) -> ChangeResult:
        removed: list[str] = []

        def change(session: Session, _unused: list[str]) -> ChangeResult:
            removed.append(people_store.delete_photo(session, person_id=person_id, photo_id=photo_id))
            person = people_store.get_person(session, person_id=person_id)
            return ChangeResult(person, [], request_training(session))

        result = self._write(change)
        self.files.delete(removed)
        return result

    def merge(self, *, person_id: int, other_id: int) -> ChangeResult:
        """``other_id`` was the same person: their photos move to ``person_id``, one person remains."""

        def change(session: Session, unused: list[str]) -> ChangeResult:
            person = people_store.merge_people(session, keep_id=person_id, other_id=other_id, unused=unused)
            return ChangeResult(person, [], request_training(session))

        try:
            return self._write(change)
        finally:
            self._removed_people()

    def _removed_people(self) -> None:
        """After a deletion or merge is committed: identify in every process stops naming the person
        now (``ModelService.recognising``), not at its next look at the database."""
        try:
            self.versions.mark_people_removed()
        except OSError as error:  # this process knows; the others see it at their next look (2 s)
            log.warning("could not tell the other processes that people were removed: %s", error)

    def request_training(self) -> int:
        """Ask for a model version now (after changes stored with ``train=False``); returns the
        training request counter."""

        def change(session: Session, _unused: list[str]) -> ChangeResult:
            return ChangeResult(None, [], request_training(session))

        requested = self._write(change).training_requested
        assert requested is not None
        return requested

    def find(self, *, external_id: str) -> Person | None:
        with self.sessions() as session:
            return people_store.find_by_external_id(session, external_id=external_id)

    def photo_hashes(self, *, person_id: int) -> set[str]:
        with self.sessions() as session:
            people_store.get_person(session, person_id=person_id)
            return people_store.photo_hashes(session, person_id=person_id)

    def get(self, *, person_id: int) -> Person:
        with self.sessions() as session:
            return people_store.get_person(session, person_id=person_id)

    def page(self, *, offset: int, limit: int, search: str | None = None) -> tuple[list[Person], int]:
        with self.sessions() as session:
            return people_store.list_people(session, offset=offset, limit=limit, search=search)

    def thumbnail(self, *, person_id: int, size: int = THUMBNAIL_SIZE) -> bytes | None:
        """A JPEG of the face in the person's first photo (square around its box, ``size`` px), or
        ``None`` without photos."""
        with self.sessions() as session:
            photo = people_store.first_photo(session, person_id=person_id)
            stored = (
                None
                if photo is None
                else people_store.photo_file(session, person_id=person_id, photo_id=photo.id)
            )
        if photo is None or stored is None:
            return None
        return self.sized.face(self.files.path(stored[0]), photo.box, size)

    def photo_file(self, *, person_id: int, photo_id: int) -> tuple[Path, str]:
        """Where one of the person's stored photos is on disk, and its content type."""
        with self.sessions() as session:
            name, content_type = people_store.photo_file(session, person_id=person_id, photo_id=photo_id)
        path = self.files.path(name)
        if not path.is_file():
            # Deleted since the row was read, its row is gone too: 404, asked again. With the row
            # still there the file was lost (a cleaned disk): the caller's read fails, a fault of ours.
            with self.sessions() as session:
                people_store.photo_file(session, person_id=person_id, photo_id=photo_id)
        return path, content_type

    def photos(self, *, person_id: int) -> list[StoredPhoto]:
        with self.sessions() as session:
            return people_store.list_photos(session, person_id=person_id)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
