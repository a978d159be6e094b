"""Write a version's files so nothing half-written is ever served.

All files are written into a hidden temporary directory, each fsynced, then ``manifest.json`` (which
records every other file's sha256 and size) is written last, and the directory is renamed to the
version number in one atomic step. A reader sees either no directory or a complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from faceforge.domain.errors import NotFoundError
from faceforge.weights.atomic import file_sha256

MANIFEST = "manifest.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _fsync_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_version(
    models_dir: Path,
    version: int,
    files: dict[str, bytes],
    manifest: dict[str, Any],
    shared: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Write ``files`` and the manifest for ``version``; returns ``{name: {sha256, size}}`` (manifest too)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f".v{version}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        listing: dict[str, Any] = {}
        for name, data in files.items():
            if not _SAFE_NAME.match(name) or name == MANIFEST:
                raise ValueError(f"unsafe artefact name {name!r}")
            path = staging / name
            with path.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            listing[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, source in (shared or {}).items():
            if not _SAFE_NAME.match(name) or name in listing or name == MANIFEST:
                raise ValueError(f"unsafe or duplicate artefact name {name!r}")
            link_or_copy(source, staging / name)
            listing[name] = {"sha256": content_sha256(source), "size": source.stat().st_size}
        body = json.dumps({**manifest, "files": listing}, indent=2, sort_keys=True).encode()
        with (staging / MANIFEST).open("wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        listing[MANIFEST] = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
        _fsync_path(staging)
        target = models_dir / str(version)
        if target.exists():  # left by a worker that died after renaming but before publishing
            shutil.rmtree(target)
        os.replace(staging, target)
        _fsync_path(models_dir)
        return listing
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def delete_versions(models_dir: Path, versions: list[int]) -> None:
    """Remove the directories of versions no longer served (missing ones are fine)."""
    for version in versions:
        shutil.rmtree(models_dir / str(version), ignore_errors=True)


def link_or_copy(source: Path, target: Path) -> None:
    """Files shared by every version (the backbone) are hard-linked: one copy on disk, same bytes."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        with target.open("rb") as handle:
            os.fsync(handle.fileno())


def content_sha256(path: Path) -> str:
    """sha256 of a large immutable file, remembered beside it (``<name>.sha256``) after the first read."""
    sidecar = path.with_name(path.name + ".sha256")
    stat = path.stat()
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    if sidecar.exists():
        recorded_stamp, _, digest = sidecar.read_text().partition(" ")
        if recorded_stamp == stamp and len(digest) == 64:
            return digest
    digest = file_sha256(path)
    sidecar.write_text(f"{stamp} {digest}")
    return digest


def version_file(models_dir: Path, version: int, name: str, listing: dict[str, Any]) -> Path:
    """The path of a published file; only names listed for the version are served (no path tricks)."""
    if name not in listing or not _SAFE_NAME.match(name):
        raise NotFoundError(f"model version {version} has no file {name!r}")
    path = models_dir / str(version) / name
    if not path.is_file():
        raise NotFoundError(f"file {name!r} of model version {version} is missing on disk")
    return path


def read_manifest(models_dir: Path, version: int) -> dict[str, Any]:
    path = models_dir / str(version) / MANIFEST
    if not path.is_file():
        raise NotFoundError(f"model version {version} has no manifest on disk")
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest
