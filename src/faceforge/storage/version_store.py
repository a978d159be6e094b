"""The model versions on disk: publish one atomically, open one for reading, prune old ones, and the
``CURRENT`` pointer every process watches to learn of a new current version.

Needs only numpy and safetensors (no PyTorch, no conversion tools): the API process reads versions
through this store and nothing else.

Publishing: every file goes into a hidden staging directory, each fsynced, then ``manifest.json``
(validated, listing every other file's sha256 and size), and the directory is renamed to the
version number in one step. A reader sees either no directory or a complete one.

Reading: a version's manifest is the one place that says what it holds (roster, threshold, metrics,
files); the database only says which versions exist, their status and which is current. A ready
version's folder never changes, so ``published`` parses its manifest once per store and keeps it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from faceforge.core.atomic import fsync_directory, write_bytes_atomically, write_durably
from faceforge.core.checksums import recorded_sha256
from faceforge.core.errors import ModelNotReadyError, NotFoundError
from faceforge.core.model.head import RecognitionHead
from faceforge.core.model.head_files import head_from_files
from faceforge.core.model.manifest import (
    MANIFEST_FILE,
    FileEntry,
    ManifestError,
    VersionManifest,
    read_manifest_bytes,
)

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CURRENT_FILE = "CURRENT"
# Rewritten whenever people are deleted or merged into another: the versions built before still name
# them, and identify leaves them out (``serving.services.models``).
REMOVALS_FILE = "PEOPLE-REMOVED"
# Two writers: one file's fsync overlaps another's write and hash.
WRITER_THREADS = 2
# Parsed manifests kept per store: the current version, the newest kept ones (FACEFORGE_WORKER__KEEP_VERSIONS,
# 5 by default) that the listing shows, and a few more. One of 10,000 people is a few MB parsed.
KEPT_MANIFESTS = 8


@dataclass(frozen=True, slots=True)
class PointerStamp:
    """What ``stat`` says of ``CURRENT`` (or ``REMOVALS_FILE``): a change means another process changed
    the current version (or removed people)."""

    inode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class RemovalsStamp:
    """People removed as this process counted them, and what ``stat`` says of ``REMOVALS_FILE``."""

    here: int
    file: PointerStamp | None


# Removals made by this process, by models folder (each service keeps a store of its own).
_removals: dict[Path, int] = {}
_removals_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class OpenedVersion:
    """A published version: its validated manifest and where its files are."""

    manifest: VersionManifest
    directory: Path

    @property
    def version(self) -> int:
        return self.manifest.version

    def head(self) -> RecognitionHead:
        """The recognition head, its file checked against the manifest's sha256."""
        entry = self.manifest.files[self.manifest.head_file]
        data = (self.directory / self.manifest.head_file).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ModelNotReadyError(
                f"model version {self.version}: {self.manifest.head_file} does not match its checksum"
            )
        return head_from_files(data, self.manifest)


@dataclass(frozen=True, slots=True)
class PublishedManifest:
    """A ready version's manifest as read from its folder, and its files' listing as served."""

    manifest: VersionManifest
    files: dict[str, FileEntry]  # ``served_files(manifest)``: its files and manifest.json itself


class VersionStaging:
    """One version's files, written into a hidden staging directory on background threads (write,
    fsync, sha256: all release the GIL) so the disk works while the next format is being built;
    ``publish`` waits for them, writes the manifest and renames the directory into place."""

    def __init__(self, models_dir: Path, version: int) -> None:
        self.models_dir = models_dir
        self.version = version
        models_dir.mkdir(parents=True, exist_ok=True)
        self.directory = models_dir / f".v{version}-{uuid.uuid4().hex}"
        self.directory.mkdir()
        self._writers = ThreadPoolExecutor(max_workers=WRITER_THREADS, thread_name_prefix="faceforge-store")
        self._pending: dict[str, Future[FileEntry]] = {}
        self._published = False

    def _check_name(self, name: str) -> None:
        if not _SAFE_NAME.match(name) or name == MANIFEST_FILE or name in self._pending:
            raise ValueError(f"unsafe or duplicate file name {name!r}")

    def add(self, name: str, data: bytes) -> None:
        """Write ``data`` as the version's file ``name`` (in the background)."""
        self._check_name(name)
        self._pending[name] = self._writers.submit(_write_file, self.directory / name, data)

    def link(self, name: str, source: Path) -> None:
        """Hard-link ``source``, a file identical in every version (its sha256 recorded beside it)."""
        self._check_name(name)
        self._pending[name] = self._writers.submit(_link_file, source, self.directory / name)

    def written(self) -> dict[str, FileEntry]:
        """Wait until every file added so far is written and fsynced; their sha256 and size."""
        return {name: future.result() for name, future in self._pending.items()}

    def publish(self, manifest: VersionManifest) -> VersionManifest:
        """Wait for every file, write ``manifest`` listing them and rename the directory to the
        version number; returns the manifest as written."""
        if manifest.version != self.version:
            raise ValueError(f"staging version {self.version} cannot publish version {manifest.version}")
        written = manifest.listed(self.written())
        write_durably(self.directory / MANIFEST_FILE, written.to_json())
        fsync_directory(self.directory)
        target = self.models_dir / str(self.version)
        if target.exists():  # left by a worker that died after renaming but before publishing
            shutil.rmtree(target)
        os.replace(self.directory, target)
        self._published = True
        fsync_directory(self.models_dir)
        return written

    def discard(self) -> None:
        """Stop the writers and, unless published, remove the staging directory."""
        self._writers.shutdown(wait=True, cancel_futures=True)
        if not self._published:
            shutil.rmtree(self.directory, ignore_errors=True)


def _write_file(target: Path, data: bytes) -> FileEntry:
    write_durably(target, data)
    return FileEntry(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def _link_file(source: Path, target: Path) -> FileEntry:
    link_or_copy(source, target)
    return FileEntry(sha256=recorded_sha256(source), size=source.stat().st_size)


class VersionStore:
    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self._manifests: OrderedDict[tuple[int, datetime], PublishedManifest] = OrderedDict()
        self._manifests_lock = threading.Lock()

    def publish(
        self, manifest: VersionManifest, files: dict[str, bytes], shared: dict[str, Path] | None = None
    ) -> VersionManifest:
        """Write ``files``, hard-link ``shared`` (identical in every version) and the manifest listing
        them all; returns the manifest as written."""
        with self.stage(manifest.version) as staging:
            for name, data in files.items():
                staging.add(name, data)
            for name, source in (shared or {}).items():
                staging.link(name, source)
            return staging.publish(manifest)

    @contextmanager
    def stage(self, version: int) -> Iterator[VersionStaging]:
        """A version written file by file while the caller still builds the rest (``VersionStaging``);
        whatever is left unpublished when the block ends, normally or by an error, is removed."""
        staging = VersionStaging(self.models_dir, version)
        try:
            yield staging
        finally:
            staging.discard()

    def open(self, version: int) -> OpenedVersion:
        """The published ``version``, its manifest read from disk now and validated (``ManifestError``
        if it is missing or damaged: only ready versions are opened, and theirs must be there)."""
        directory = self.models_dir / str(version)
        try:
            data = (directory / MANIFEST_FILE).read_bytes()
        except FileNotFoundError:
            raise ManifestError(f"model version {version}: its folder has no {MANIFEST_FILE}") from None
        except IsADirectoryError:
            raise ManifestError(f"model version {version}: its {MANIFEST_FILE} is not a file") from None
        manifest = read_manifest_bytes(data, where=f"model version {version}")
        if manifest.version != version:
            raise ManifestError(
                f"model version {version}: its {MANIFEST_FILE} describes version {manifest.version}"
            )
        return OpenedVersion(manifest, directory)

    def published(self, version: int, *, created_at: datetime) -> PublishedManifest:
        """The manifest of ready ``version`` (``ManifestError`` if missing or damaged), parsed on the
        first call and kept: a ready version's folder never changes, and every phone asks for the
        current one. ``created_at``, its database row's, tells it from a version of the same number
        built into this home before the database was replaced. A damaged manifest is not kept: it is
        read again next time (a restored folder is seen)."""
        key = (version, created_at)
        with self._manifests_lock:
            kept = self._manifests.get(key)
            if kept is not None:
                self._manifests.move_to_end(key)
                return kept
        manifest = self.open(version).manifest
        read = PublishedManifest(manifest, served_files(manifest))
        with self._manifests_lock:
            self._manifests[key] = read
            while len(self._manifests) > KEPT_MANIFESTS:
                self._manifests.popitem(last=False)
        return read

    def file(self, version: int, name: str, listing: Mapping[str, object]) -> Path:
        """The path of a published file; only names the version lists are served (no path tricks)."""
        if name not in listing or not _SAFE_NAME.match(name):
            raise NotFoundError(f"model version {version} has no file {name!r}")
        path = self.models_dir / str(version) / name
        if not path.is_file():
            raise NotFoundError(f"file {name!r} of model version {version} is missing on disk")
        return path

    def prune(self, versions: list[int]) -> None:
        """Remove the directories of versions no longer kept (missing ones are fine)."""
        for version in versions:
            shutil.rmtree(self.models_dir / str(version), ignore_errors=True)

    def mark_current(self, version: int | None) -> None:
        """Tell every process sharing this home that the current version changed (the database holds
        which one; this file only has to change, atomically, whenever it does)."""
        text = f"{version if version is not None else 'none'} {uuid.uuid4().hex}\n"
        write_bytes_atomically(self.models_dir / CURRENT_FILE, text.encode())

    def pointer_stamp(self) -> PointerStamp | None:
        return self._stamp(CURRENT_FILE)

    def mark_people_removed(self) -> None:
        """Tell every process sharing this home that people were deleted or merged into another, once
        the database says so: they stop naming them at once instead of at their next look. The file
        grows by a byte each time, so that no two removals leave the same stamp (a rewritten file may
        get its inode back and the same mtime within a clock tick); this process counts them too, so
        that it knows even if the file cannot be written."""
        with _removals_lock:
            _removals[self.models_dir] = _removals.get(self.models_dir, 0) + 1
        self.models_dir.mkdir(parents=True, exist_ok=True)  # no version yet, and already a deletion
        with (self.models_dir / REMOVALS_FILE).open("ab") as stamp:
            stamp.write(b".")

    def removals_stamp(self) -> RemovalsStamp:
        return RemovalsStamp(_removals.get(self.models_dir, 0), self._stamp(REMOVALS_FILE))

    def _stamp(self, name: str) -> PointerStamp | None:
        try:
            stat = (self.models_dir / name).stat()
        except FileNotFoundError:
            return None
        return PointerStamp(stat.st_ino, stat.st_size, stat.st_mtime_ns)


def served_files(manifest: VersionManifest) -> dict[str, FileEntry]:
    """Every file of a published version a client may download: its files and the manifest itself
    (whose bytes are canonical, so its digest is known without reading it back)."""
    body = manifest.to_json()
    return {
        **manifest.files,
        MANIFEST_FILE: FileEntry(sha256=hashlib.sha256(body).hexdigest(), size=len(body)),
    }


def link_or_copy(source: Path, target: Path) -> None:
    """Files shared by every version (the backbone) are hard-linked: one copy on disk, same bytes.
    Where a link cannot be made (the weights cache on another file system than the home, or one that
    has no hard links) the file is copied, and a warning says so: each version then costs the
    backbones' size again (about 300 MB with every format)."""
    try:
        os.link(source, target)
    except OSError as error:
        log.warning(
            "could not hard-link %s into %s (%s); copying it (%.0f MB) instead. Keep "
            "FACEFORGE_WEIGHTS_CACHE on the file system of FACEFORGE_HOME so every version shares one copy",
            source,
            target.parent,
            error.strerror or error,
            source.stat().st_size / 1e6,
        )
        shutil.copyfile(source, target)
        with target.open("rb") as handle:
            os.fsync(handle.fileno())
