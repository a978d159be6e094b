"""The strangers collection: faces that must never be named (the mailman, a neighbour, a customer).

A stranger has photos like a person, analysed and judged the same way (``PeopleService``'s
verdicts and limits), but no name: only an optional note for the admin. Training receives their
embeddings as impostor evidence (``fit_head``'s ``strangers``), so no listing, roster, label or
model ever names them. Each change asks for a new model version in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.core.errors import ConflictError, RequestRejectedError
from faceforge.core.records import Stranger, StrangerPhoto
from faceforge.serving.services.people import (
    ENROLLED_PHOTO,
    STRANGER_PHOTO,
    THUMBNAIL_SIZE,
    PeopleService,
    PhotoOwner,
    PhotoVerdict,
    PreparedPhotos,
    Upload,
    note_faces_alike,
    prepare_photos,
    store_prepared,
    write_with_files,
)
from faceforge.storage import people_store, strangers_store
from faceforge.storage.people_store import request_training
from faceforge.storage.photo_files import PhotoFiles

STRANGER_PHOTOS = "strangers"  # their files' folder under the home's files, apart from people's


@dataclass(slots=True)
class StrangerChange:
    stranger: Stranger | None
    photos: list[PhotoVerdict] = field(default_factory=list)
    training_requested: int | None = None  # the training request counter after this change, if any


class StrangersService:
    def __init__(
        self,
        people: PeopleService,
        sessions: sessionmaker[Session],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.people = people  # photo analysis, limits and text checks are the people's own
        self.sessions = sessions
        self.files = PhotoFiles(people.settings.files_dir / STRANGER_PHOTOS)
        self.on_change = on_change

    def _owner(self, session: Session, stranger_id: int) -> PhotoOwner:
        return PhotoOwner(
            embeddings=lambda: strangers_store.stranger_embeddings(
                session, stranger_id=stranger_id, embedder=EMBEDDER_NAME
            ),
            known=lambda: strangers_store.photo_ids_by_sha256(session, stranger_id=stranger_id),
            add_photo=lambda name, fields: strangers_store.add_photo(
                session, stranger_id=stranger_id, stored_name=name, fields=fields
            ),
            lock=lambda digests: self._lock(session, stranger_id, digests),
            held_elsewhere=lambda digests: self._held_in(session, digests, stranger_id),
        )

    @staticmethod
    def _lock(session: Session, stranger_id: int, digests: list[str]) -> None:
        people_store.lock_photos(session, digests)  # again, if the change did: locks are re-entrant
        strangers_store.lock_stranger(session, stranger_id=stranger_id)

    def _note_people_alike(self, prepared: PreparedPhotos) -> None:
        """Say on each accepted photo whose face looks like an enrolled person's photos: while the
        stranger is kept, that person's margin stays above this face's score, and if the stranger
        is them, they are hardly named. A reviewer's case: Try it named Bob, the admin pressed "Not
        Bob" on Bob himself, and Bob was never named again without a word (a person of one photo has
        no held-out photo whose loss the version could report). Said as a condition: a stranger who
        merely looks like them (the case the button is for) leaves them named, and "they will hardly
        be named" told a tester to delete the stranger who had fixed it."""
        if not prepared.accepted:
            return
        with self.sessions() as session:
            faces = people_store.faces_with_names(session, embedder=EMBEDDER_NAME)
        names = {person_id: name for person_id, name, _ in faces}
        note_faces_alike(
            prepared,
            [(person_id, embedding) for person_id, _, embedding in faces],
            lambda person_id, similarity: (
                f"this face looks like {names[person_id]}'s (person {person_id}, similarity "
                f"{similarity:.2f}): while this stranger is kept, {names[person_id]} is named only on "
                "faces more like their photos than this one; if this stranger is them, delete the "
                "stranger, or they will hardly be named"
            ),
        )

    def _held_elsewhere(
        self, digests: list[str], stranger_id: int | None = None
    ) -> dict[str, tuple[str, str]]:
        with self.sessions() as session:
            return self._held_in(session, digests, stranger_id)

    @staticmethod
    def _held_in(
        session: Session, digests: list[str], stranger_id: int | None = None
    ) -> dict[str, tuple[str, str]]:
        """Photos a person holds (a stranger's photo would make them unnameable), and photos another
        stranger holds (the same face stored twice: a second click on Try it did it)."""
        people = people_store.people_with_photos(session, digests)
        strangers = strangers_store.strangers_with_photos(session, digests)
        held = {
            digest: (
                STRANGER_PHOTO,
                f"this photo is already stored for stranger {holder}",
            )
            for digest, holder in strangers.items()
            if holder != stranger_id
        }
        held.update(
            (
                digest,
                (
                    ENROLLED_PHOTO,
                    f"this photo is enrolled for {name} (person {person_id}); "
                    "a stranger's photos must be of someone who is not enrolled",
                ),
            )
            for digest, (person_id, name) in people.items()
        )
        return held

    def _write(
        self, change: Callable[[Session, list[str]], StrangerChange], written: list[str] | None = None
    ) -> StrangerChange:
        """Run ``change`` in one write transaction (``write_with_files``)."""
        result = write_with_files(self.sessions, self.files, change, written or [])
        if result.training_requested is not None:
            self.on_change()
        return result

    def add(
        self, *, note: str | None, uploads: list[Upload], source: str | None = None, train: bool = True
    ) -> StrangerChange:
        """A new stranger from photos (at least one must be accepted, or nothing is stored).
        ``source`` names where an import took them from (a folder, a loose photo's sha256), so a
        second run finds them; ``train=False`` stores them without asking for a model version."""
        clean_note = self.people.clean_optional(note, "note")
        clean_source = self.people.clean_optional(source, "source")
        if not uploads:
            raise RequestRejectedError("photos_required", "a stranger needs at least one photo")
        self.people.check_uploads(uploads)
        if clean_source is not None and self.find(source=clean_source) is not None:
            # Said before the photos' verdicts: a used source is a conflict whatever the photos say.
            raise ConflictError(f"a stranger from {clean_source!r} already exists")
        prepared = prepare_photos(None, self.people.analyse(uploads), self.files, self._held_elsewhere)
        self._note_people_alike(prepared)

        def change(session: Session, unused: list[str]) -> StrangerChange:
            prepared.lock(session)
            stranger_id = strangers_store.create_stranger(session, note=clean_note, source=clean_source)
            verdicts = store_prepared(self._owner(session, stranger_id), prepared, unused)
            requested = request_training(session) if train else None
            return StrangerChange(
                strangers_store.get_stranger(session, stranger_id=stranger_id), verdicts, requested
            )

        return self._write(change, prepared.names)

    def add_photos(self, *, stranger_id: int, uploads: list[Upload], train: bool = True) -> StrangerChange:
        if not uploads:
            raise RequestRejectedError("photos_required", "at least one photo is required")
        self.people.check_uploads(uploads)
        with self.sessions() as session:
            strangers_store.get_stranger(session, stranger_id=stranger_id)  # 404 before the analysis
        analysed = self.people.analyse(uploads)
        with self.sessions() as session:
            prepared = prepare_photos(
                self._owner(session, stranger_id),
                analysed,
                self.files,
                lambda digests: self._held_elsewhere(digests, stranger_id),
            )
        self._note_people_alike(prepared)

        def change(session: Session, unused: list[str]) -> StrangerChange:
            prepared.lock(session)
            verdicts = store_prepared(self._owner(session, stranger_id), prepared, unused)
            requested = request_training(session) if train else None
            return StrangerChange(
                strangers_store.get_stranger(session, stranger_id=stranger_id), verdicts, requested
            )

        return self._write(change, prepared.names)

    def delete(self, *, stranger_id: int) -> StrangerChange:
        removed: list[str] = []

        def change(session: Session, _unused: list[str]) -> StrangerChange:
            removed.extend(strangers_store.delete_stranger(session, stranger_id=stranger_id))
            return StrangerChange(None, [], request_training(session) if removed else None)

        result = self._write(change)
        self.files.delete(removed)  # only after the rows are gone for good
        return result

    def delete_photo(self, *, stranger_id: int, photo_id: int) -> StrangerChange:
        """One photo fewer (not their only one, ``strangers_store.delete_photo``); a new version
        stops using its face."""
        removed: list[str] = []

        def change(session: Session, _unused: list[str]) -> StrangerChange:
            removed.append(strangers_store.delete_photo(session, stranger_id=stranger_id, photo_id=photo_id))
            stranger = strangers_store.get_stranger(session, stranger_id=stranger_id)
            return StrangerChange(stranger, [], request_training(session))

        result = self._write(change)
        self.files.delete(removed)  # only after the row is gone for good
        return result

    def get(self, *, stranger_id: int) -> Stranger:
        with self.sessions() as session:
            return strangers_store.get_stranger(session, stranger_id=stranger_id)

    def page(self, *, offset: int, limit: int) -> tuple[list[Stranger], int]:
        with self.sessions() as session:
            return strangers_store.list_strangers(session, offset=offset, limit=limit)

    def photos(self, *, stranger_id: int) -> list[StrangerPhoto]:
        with self.sessions() as session:
            return strangers_store.list_photos(session, stranger_id=stranger_id)

    def find(self, *, source: str) -> Stranger | None:
        with self.sessions() as session:
            return strangers_store.find_by_source(session, source=source)

    def photo_hashes(self, *, stranger_id: int | None = None) -> set[str]:
        """The sha256 of one stranger's photos, or of every stranger's photos."""
        with self.sessions() as session:
            if stranger_id is None:
                return strangers_store.all_photo_hashes(session)
            strangers_store.get_stranger(session, stranger_id=stranger_id)
            return strangers_store.photo_hashes(session, stranger_id=stranger_id)

    def photo_path(self, *, stranger_id: int, photo_id: int) -> tuple[Path, str]:
        """``(path of the stored file, content type)`` of one of the stranger's photos."""
        with self.sessions() as session:
            name, content_type = strangers_store.photo_file(
                session, stranger_id=stranger_id, photo_id=photo_id
            )
        path = self.files.path(name)
        if not path.is_file():
            # Deleted since the row was read, its row is gone too: 404, asked again. With the row
            # still there the file was lost (a cleaned disk): the caller's read fails, a fault of ours.
            with self.sessions() as session:
                strangers_store.photo_file(session, stranger_id=stranger_id, photo_id=photo_id)
        return path, content_type

    def thumbnail(self, *, stranger_id: int, size: int = THUMBNAIL_SIZE) -> bytes | None:
        """A JPEG of the face in the stranger's first photo, or ``None`` without photos."""
        with self.sessions() as session:
            photos = strangers_store.list_photos(session, stranger_id=stranger_id)
            if not photos:
                return None
            name, _ = strangers_store.photo_file(session, stranger_id=stranger_id, photo_id=photos[0].id)
        return self.people.sized.face(self.files.path(name), photos[0].box, size)
