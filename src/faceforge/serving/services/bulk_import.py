"""Bulk import: a folder with one sub-folder of photos per person, and a folder of strangers (one
sub-folder per stranger, or one loose photo per stranger), into a faceforge home or server.

Resumable by construction: a person is found by their folder's name (stored as ``external_id``), a
stranger by their folder's name or loose photo's SHA-256 (stored as ``source``), a photo by the
SHA-256 of its bytes, so a second run over the same folders stores nothing and an interrupted run
picks up where it stopped. Photos are stored without asking for a model version
each (``train=False``); the importer asks for one version at the end, also when interrupted, so the
photos already stored are never left out of the model.

Where the photos go is a ``ImportTarget``: the local home (``LocalTarget``: the service layer
in-process) or a running server over HTTP (``cli.http_target.HttpTarget``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from faceforge.core.dataset import image_files, loose_images, person_folders
from faceforge.core.errors import (
    ConflictError,
    DatasetError,
    FaceforgeError,
    NotFoundError,
    RequestRejectedError,
)
from faceforge.serving.services.people import (
    DUPLICATE,
    PeopleService,
    PhotosRejectedError,
    PhotoVerdict,
    Upload,
)
from faceforge.serving.services.strangers import StrangersService


@dataclass(frozen=True, slots=True)
class FolderPerson:
    """A person (or a stranger) to import: what finds them again, what they are called, their photos."""

    external_id: str  # the folder's name (a loose stranger photo: its sha256)
    name: str  # the folder's name with underscores as spaces ("Colin_Powell" -> "Colin Powell")
    photos: list[Path]
    loose: bool = False  # a loose photo collected as a stranger of its own (no folder names them)


class BatchRefusedError(FaceforgeError):
    """A target refused a batch of photos as a whole, for what was sent (not for a fault of its own)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class BatchResult:
    person_id: int | None  # None: the person does not exist (every photo of a first batch refused)
    verdicts: list[PhotoVerdict]


class ImportTarget(Protocol):
    max_photos_per_request: int

    def find_person(self, external_id: str) -> int | None: ...
    def known_hashes(self, person_id: int) -> set[str]: ...
    def create_person(self, person: FolderPerson, uploads: list[Upload]) -> BatchResult: ...
    def add_photos(self, person_id: int, uploads: list[Upload]) -> BatchResult: ...
    def request_training(self) -> None: ...
    def find_stranger(self, source: str) -> int | None: ...
    def stranger_hashes(self, stranger_id: int) -> set[str]: ...
    def create_stranger(self, stranger: FolderPerson, uploads: list[Upload]) -> BatchResult: ...
    def add_stranger_photos(self, stranger_id: int, uploads: list[Upload]) -> BatchResult: ...


class _Collection(Protocol):
    """People or strangers of a target, as the importer walks them."""

    kind: str  # "person" or "stranger": in refusals and in the summary's counts

    def find(self, key: str) -> int | None: ...
    def known_hashes(self, item_id: int) -> set[str]: ...
    def create(self, item: FolderPerson, uploads: list[Upload]) -> BatchResult: ...
    def add_photos(self, item_id: int, uploads: list[Upload]) -> BatchResult: ...


class _People:
    kind = "person"

    def __init__(self, target: ImportTarget) -> None:
        self.find, self.known_hashes = target.find_person, target.known_hashes
        self.create, self.add_photos = target.create_person, target.add_photos


class _Strangers:
    kind = "stranger"

    def __init__(self, target: ImportTarget) -> None:
        self.find, self.known_hashes = target.find_stranger, target.stranger_hashes
        self.create, self.add_photos = target.create_stranger, target.add_stranger_photos


@dataclass(slots=True)
class ImportProgress:
    photos_total: int
    photos_done: int = 0
    accepted: int = 0
    refused: int = 0
    already_imported: int = 0
    people_done: int = 0
    people_total: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def photos_per_second(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.photos_done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.photos_per_second
        return (self.photos_total - self.photos_done) / rate if rate > 0 else None


@dataclass(slots=True)
class ImportSummary:
    people_created: int = 0
    people_found: int = 0
    strangers_created: int = 0
    strangers_found: int = 0
    photos_accepted: int = 0
    photos_already_imported: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    # Accepted photos the server said something about (a stranger's face that looks like an enrolled
    # person's, or the reverse): accepted, but not as the user may think.
    notes: list[dict[str, Any]] = field(default_factory=list)
    # Photos lying beside the person folders (``loose_photos``): nobody's, so not imported.
    ignored: list[str] = field(default_factory=list)
    # A file with the same bytes as another in the same folder: imported once. Counted among the
    # photos already imported, on a first run it read as if an earlier run had imported it.
    repeated: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    training_requested: bool = False
    # Nothing new, but a version an earlier run asked for was never built (that run was stopped while
    # it trained, or ran with --no-wait on a home without a server): this run trained it.
    trained_earlier_request: bool = False
    seconds: float = 0.0
    photos_per_second: float = 0.0
    version: int | None = None
    # The version this import trained when it is not the current one (held back, or failed):
    # ``{"version": n, "message": why}``. Only "version 3 is current" was said, and the people just
    # imported were not recognised with nothing to tell why.
    not_current: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _require_folder(root: Path) -> None:
    if not root.is_dir():  # a file said "folder not found" (a tester's), as eval and build say it
        raise DatasetError(
            f"{root} is a file, not a folder" if root.exists() else f"folder not found: {root}"
        )


def scan_folders(root: Path) -> list[FolderPerson]:
    """Every person folder below ``root`` that holds images, in name order."""
    _require_folder(root)
    people = []
    for folder in person_folders(root):
        photos = image_files(folder)
        if photos:
            people.append(FolderPerson(folder.name, folder.name.replace("_", " ").strip(), photos))
    if not people:
        raise DatasetError(f"{root} has no person folders with photos (expected one sub-folder per person)")
    return people


def loose_photos(root: Path) -> list[Path]:
    """Photos at the top of a folder of people, beside the person folders: a person is a sub-folder
    named after them, so these belong to nobody and are not imported. Listed so that a summary says
    so; left out silently, a user would not know a photo was never enrolled."""
    return loose_images(root)


def scan_strangers(root: Path) -> list[FolderPerson]:
    """Every stranger below ``root``: each sub-folder with images is one (found again by the folder's
    name), each loose image one more (found again by its sha256); folders first, in name order."""
    _require_folder(root)
    strangers = []
    for folder in person_folders(root):
        photos = image_files(folder)
        if photos:
            strangers.append(FolderPerson(folder.name, folder.name.replace("_", " ").strip(), photos))
    for photo in loose_photos(root):
        try:
            digest = hashlib.sha256(photo.read_bytes()).hexdigest()
        except OSError:  # refused on its own when imported (found again by nothing: it has no content)
            digest = f"unreadable {photo.name}"
        strangers.append(FolderPerson(digest, photo.name, [photo], loose=True))
    if not strangers:
        raise DatasetError(f"{root} has no photos of strangers (a sub-folder or a photo per stranger)")
    return strangers


def _started(people: Sequence[FolderPerson], strangers: Sequence[FolderPerson]) -> str:
    def photos(count: int) -> str:
        return f"{count} photo{'' if count == 1 else 's'}"

    parts = [
        f"{len(group)} {noun if len(group) != 1 else noun_one} ({photos(sum(len(p.photos) for p in group))})"
        for group, noun, noun_one in ((people, "people", "person"), (strangers, "strangers", "stranger"))
        if group
    ]
    return " and ".join(parts)


def _said(
    kind: str, person: FolderPerson, file: str | None, reasons: list[str], message: str | None
) -> dict[str, Any]:
    """What the summary says of one photo: whose it is (the folder; null for a loose photo collected
    as a stranger, whose key, its sha256 or "unreadable <file>", the summary printed), which file, why."""
    return {
        kind: None if person.loose else person.external_id,
        "name": person.name,
        "file": file,
        "reasons": reasons,
        "message": message,
    }


def _refusal(kind: str, person: FolderPerson, verdict: PhotoVerdict) -> dict[str, Any]:
    return _said(kind, person, verdict.filename, verdict.reasons, verdict.message)


def _unreadable(kind: str, person: FolderPerson, path: Path, error: OSError) -> dict[str, Any]:
    message = f"the file cannot be read: {error.strerror or error}"
    return _said(kind, person, path.name, ["unreadable_file"], message)


def _repeated(kind: str, person: FolderPerson, path: Path, first: str) -> dict[str, Any]:
    return _said(
        kind, person, path.name, ["repeated_file"], f"the same file as {first}, which stands for both"
    )


class BulkImporter:
    """Imports people ``concurrency`` at a time: while one person's photos are stored, the next
    person's are analysed (people have 5-10 photos, too few to keep every core busy alone)."""

    def __init__(
        self,
        target: ImportTarget,
        *,
        on_progress: Callable[[ImportProgress, str | None], None],
        concurrency: int = 2,
    ) -> None:
        self.target = target
        self.on_progress = on_progress  # (progress, line about a finished person or None)
        self.concurrency = concurrency
        self._lock = threading.Lock()
        # People and strangers another run created while this one meant to (two imports of one folder
        # at once): found, not created.
        self._found_meanwhile: set[tuple[str, int]] = set()

    def run(self, people: Sequence[FolderPerson], strangers: Sequence[FolderPerson] = ()) -> ImportSummary:
        summary = ImportSummary()
        everyone = [*people, *strangers]
        progress = ImportProgress(
            photos_total=sum(len(p.photos) for p in everyone), people_total=len(everyone)
        )
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="faceforge-import")
        work = [(_People(self.target), p) for p in people] + [(_Strangers(self.target), s) for s in strangers]
        try:
            futures = [
                pool.submit(self._import_one, collection, item, summary, progress)
                for collection, item in work
            ]
            # Said once the work is under way, so from this line on Ctrl-C stops it cleanly.
            self.on_progress(progress, f"importing {_started(people, strangers)}")
            for future in futures:
                future.result()
        except KeyboardInterrupt:
            # Ctrl-C: people not started are not started; a person being stored finishes its
            # transaction (all of a batch or nothing), so a second run resumes cleanly.
            summary.interrupted = True
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            # One version for everything stored, whether the run finished or was stopped.
            if summary.photos_accepted:
                self.target.request_training()
                summary.training_requested = True
            summary.seconds = round(time.perf_counter() - progress.started, 3)
            summary.photos_per_second = round(progress.photos_per_second, 2)
        return summary

    def _import_one(
        self, collection: _Collection, person: FolderPerson, summary: ImportSummary, progress: ImportProgress
    ) -> None:
        person_id = collection.find(person.external_id)
        known = collection.known_hashes(person_id) if person_id is not None else set()
        pending: list[Upload] = []
        unreadable: list[dict[str, Any]] = []
        repeated: list[dict[str, Any]] = []
        first_of: dict[str, str] = {}  # each file's sha256 -> the first file of the folder with it
        for path in person.photos:
            try:
                data = path.read_bytes()
            except OSError as error:  # a broken link, a file without read permission: that photo's
                unreadable.append(_unreadable(collection.kind, person, path, error))
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest in first_of:  # the same file twice in one folder is imported once, and said
                repeated.append(_repeated(collection.kind, person, path, first_of[digest]))
                continue
            first_of[digest] = path.name
            if digest not in known:
                known.add(digest)
                pending.append(Upload(path.name, data))
        skipped = len(person.photos) - len(pending) - len(unreadable) - len(repeated)
        is_person = collection.kind == "person"
        with self._lock:
            if is_person:
                summary.people_found += person_id is not None
            else:
                summary.strangers_found += person_id is not None
            summary.photos_already_imported += skipped
            summary.refused.extend(unreadable)
            summary.repeated.extend(repeated)
            progress.already_imported += skipped
            progress.refused = len(summary.refused)
            progress.photos_done += skipped + len(unreadable) + len(repeated)
        accepted, refused, noted = 0, len(unreadable), 0
        batch_size = self.target.max_photos_per_request
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            found_before = person_id is not None
            person_id, verdicts = self._store(collection, person, person_id, batch)
            with self._lock:
                meanwhile = (collection.kind, person_id) in self._found_meanwhile
            created = not found_before and person_id is not None and not meanwhile
            found_meanwhile = not found_before and meanwhile
            # A photo the person has already is one another run stored meanwhile (this run left
            # out those stored before it began): already imported, not refused.
            stored_meanwhile = sum(v.reasons == [DUPLICATE] for v in verdicts)
            skipped += stored_meanwhile  # said on the person's line too
            verdicts = [v for v in verdicts if v.reasons != [DUPLICATE]]
            accepted += sum(v.accepted for v in verdicts)
            refusals = [_refusal(collection.kind, person, v) for v in verdicts if not v.accepted]
            notes = [_refusal(collection.kind, person, v) for v in verdicts if v.accepted and v.message]
            noted += len(notes)
            refused += len(refusals)
            with self._lock:
                if is_person:
                    summary.people_created += created
                    summary.people_found += found_meanwhile
                else:
                    summary.strangers_created += created
                    summary.strangers_found += found_meanwhile
                summary.photos_accepted += sum(v.accepted for v in verdicts)
                summary.photos_already_imported += stored_meanwhile
                progress.already_imported += stored_meanwhile
                summary.refused.extend(refusals)
                summary.notes.extend(notes)
                progress.accepted, progress.refused = summary.photos_accepted, len(summary.refused)
                progress.photos_done += len(batch)
                self.on_progress(progress, None)
        label = person.external_id if is_person else f"stranger {person.name}"
        line = f"{label}: {accepted} accepted, {refused} refused" + (
            f", {noted} with a note" if noted else ""
        )
        with self._lock:
            progress.people_done += 1
            line += f", {skipped} already imported" if skipped else ""
            self.on_progress(
                progress, line + (f", {len(repeated)} repeated in the folder" if repeated else "")
            )

    def _store(
        self, collection: _Collection, person: FolderPerson, person_id: int | None, batch: list[Upload]
    ) -> tuple[int | None, list[PhotoVerdict]]:
        """Store ``batch`` for ``person`` (created by the first batch that has an accepted photo):
        the person's id then, and each photo's verdict. A batch refused as a whole (a photo over the
        size limit, a folder name the server does not take) is sent again a photo at a time, so that
        only the photos at fault are refused; it used to end the whole import at that folder, on
        every run, with the folders after it never imported."""
        try:
            if person_id is None:
                result = collection.create(person, batch)
            else:
                result = collection.add_photos(person_id, batch)
            return result.person_id, result.verdicts
        except BatchRefusedError as error:
            if person_id is None and error.code == ConflictError.code:
                # Another run of this folder created them meanwhile (two imports at once): found by
                # external_id, as a second run would. Each photo was refused as "conflict" before.
                found = collection.find(person.external_id)
                if found is not None:
                    with self._lock:
                        self._found_meanwhile.add((collection.kind, found))
                    return self._store(collection, person, found, batch)
            if len(batch) > 1:
                verdicts: list[PhotoVerdict] = []
                for upload in batch:
                    person_id, one = self._store(collection, person, person_id, [upload])
                    verdicts.extend(one)
                return person_id, verdicts
            return person_id, [PhotoVerdict(0, batch[0].filename, False, [error.code], str(error))]


# What the services raise for what was sent (limits, names, someone deleted meanwhile): the API's 4xx.
_REFUSALS = (RequestRejectedError, ConflictError, NotFoundError)


def _refused(error: FaceforgeError) -> BatchRefusedError:
    return BatchRefusedError(error.code, error.message)


class LocalTarget:
    """The local home, through the same services the API uses (``PeopleService``, ``StrangersService``)."""

    def __init__(self, people: PeopleService, strangers: StrangersService) -> None:
        self.people = people
        self.strangers = strangers
        self.max_photos_per_request = people.settings.limits.max_photos_per_request

    def find_person(self, external_id: str) -> int | None:
        found = self.people.find(external_id=external_id)
        return None if found is None else found.id

    def known_hashes(self, person_id: int) -> set[str]:
        return self.people.photo_hashes(person_id=person_id)

    def create_person(self, person: FolderPerson, uploads: list[Upload]) -> BatchResult:
        try:
            result = self.people.register(
                name=person.name, position=None, external_id=person.external_id, uploads=uploads, train=False
            )
        except PhotosRejectedError as error:
            return BatchResult(None, error.verdicts)
        except _REFUSALS as error:
            raise _refused(error) from None
        assert result.person is not None
        return BatchResult(result.person.id, result.photos)

    def add_photos(self, person_id: int, uploads: list[Upload]) -> BatchResult:
        try:
            result = self.people.add_photos(person_id=person_id, uploads=uploads, train=False)
        except PhotosRejectedError as error:
            return BatchResult(person_id, error.verdicts)
        except _REFUSALS as error:
            raise _refused(error) from None
        return BatchResult(person_id, result.photos)

    def request_training(self) -> None:
        self.people.request_training()

    def find_stranger(self, source: str) -> int | None:
        found = self.strangers.find(source=source)
        return None if found is None else found.id

    def stranger_hashes(self, stranger_id: int) -> set[str]:
        return self.strangers.photo_hashes(stranger_id=stranger_id)

    def create_stranger(self, stranger: FolderPerson, uploads: list[Upload]) -> BatchResult:
        try:
            change = self.strangers.add(
                note=stranger.name, source=stranger.external_id, uploads=uploads, train=False
            )
        except PhotosRejectedError as error:
            return BatchResult(None, error.verdicts)
        except _REFUSALS as error:
            raise _refused(error) from None
        assert change.stranger is not None
        return BatchResult(change.stranger.id, change.photos)

    def add_stranger_photos(self, stranger_id: int, uploads: list[Upload]) -> BatchResult:
        try:
            change = self.strangers.add_photos(stranger_id=stranger_id, uploads=uploads, train=False)
        except PhotosRejectedError as error:
            return BatchResult(stranger_id, error.verdicts)
        except _REFUSALS as error:
            raise _refused(error) from None
        return BatchResult(stranger_id, change.photos)
