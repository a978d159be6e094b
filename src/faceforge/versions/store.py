"""The model versions on disk: publish one atomically, open one for reading, prune old ones, and the
``CURRENT`` pointer every process watches to learn of a new current version.

Needs only numpy and safetensors (no PyTorch, no conversion tools): the API process reads versions
through this store and nothing else.

Publishing: every file goes into a hidden staging directory, each fsynced, then ``manifest.json``
(validated, listing every other file's sha256 and size), and the directory is renamed to the
version number in one step. A reader sees either no directory or a complete one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from faceforge.atomic import fsync_directory, write_bytes_atomically, write_durably
from faceforge.checksums import recorded_sha256
from faceforge.domain.errors import ModelNotReadyError, NotFoundError
from faceforge.training.head import RecognitionHead
from faceforge.training.serialize import head_from_files
from faceforge.versions.manifest import MANIFEST_FILE, FileEntry, VersionManifest, read_manifest_bytes

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CURRENT_FILE = "CURRENT"


@dataclass(frozen=True, slots=True)
class PointerStamp:
    """What ``stat`` says of ``CURRENT``: a change means another process changed the current version."""

    inode: int
    size: int
    mtime_ns: int


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


class VersionStore:
    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir

    def publish(
        self, manifest: VersionManifest, files: dict[str, bytes], shared: dict[str, Path] | None = None
    ) -> VersionManifest:
        """Write ``files``, hard-link ``shared`` (identical in every version) and the manifest listing
        them all; returns the manifest as written."""
        version = manifest.version
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = self.models_dir / f".v{version}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            listing: dict[str, FileEntry] = {}
            for name, data in files.items():
                self._check_name(name, listing)
                write_durably(staging / name, data)
                listing[name] = FileEntry(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
            for name, source in (shared or {}).items():
                self._check_name(name, listing)
                link_or_copy(source, staging / name)
                listing[name] = FileEntry(sha256=recorded_sha256(source), size=source.stat().st_size)
            written = manifest.listed(listing)
            write_durably(staging / MANIFEST_FILE, written.to_json())
            fsync_directory(staging)
            target = self.models_dir / str(version)
            if target.exists():  # left by a worker that died after renaming but before publishing
                shutil.rmtree(target)
            os.replace(staging, target)
            fsync_directory(self.models_dir)
            return written
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @staticmethod
    def _check_name(name: str, taken: dict[str, FileEntry]) -> None:
        if not _SAFE_NAME.match(name) or name == MANIFEST_FILE or name in taken:
            raise ValueError(f"unsafe or duplicate file name {name!r}")

    def open(self, version: int) -> OpenedVersion:
        """The published ``version``, its manifest validated (``NotFoundError`` if it is not on disk)."""
        directory = self.models_dir / str(version)
        path = directory / MANIFEST_FILE
        if not path.is_file():
            raise NotFoundError(f"model version {version} has no manifest on disk")
        manifest = read_manifest_bytes(path.read_bytes(), where=f"model version {version}")
        return OpenedVersion(manifest, directory)

    def file(self, version: int, name: str, listing: dict[str, object]) -> Path:
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
        try:
            stat = (self.models_dir / CURRENT_FILE).stat()
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
    """Files shared by every version (the backbone) are hard-linked: one copy on disk, same bytes."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        with target.open("rb") as handle:
            os.fsync(handle.fileno())
