"""The agent's copy of a version's on-device files: downloaded once, kept on disk, updated by head.

Layout of the cache directory (``--cache``)::

    blobs/<sha256>     every downloaded file, named by its sha256 (checked while downloading)
    current.json       the manifest of the version in use, as the server published it

A version is used from its manifest (``manifest.json``: labels, people, ``files`` with each file's
sha256, ``variants``). The split variants (``tflite_int8_split``, ``tflite_split``, ``onnx_split``)
pair a backbone that is the same file in every version with a small head, so a new version costs
the head (and the manifest) only: a file whose sha256 is already in ``blobs/`` is never fetched
again. ``current.json`` is replaced only once every file of the new version is on disk, so the
agent starts offline from whatever version it used last; it is deleted when the server has no version
any more (every person deleted), so that a restart does not name them again.

The manifest is read as plain JSON here (the light install has no pydantic): the fields used are
``version``, ``labels``, ``unknown_label``, ``people`` (``id``, ``name``, ``label``), ``files`` and
``variants``, all part of ``faceforge-model/1`` (``versions.manifest``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from faceforge.core.atomic import write_atomically, write_bytes_atomically
from faceforge.edge.choices import ModelChoice
from faceforge.edge.errors import NoModelVersion, WatchError

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "current.json"
NO_VERSION_CODE = "model_not_ready"  # the server's 409 from GET /models/current: it has no version
API = "/api/v1"
TIMEOUT = httpx.Timeout(10.0, read=60.0)
# A temporary file unchanged for this long is no download in progress (each one writes at least once
# per read timeout): one a killed agent left behind, deleted when a version is fetched.
STALE_TEMP_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    name: str
    label: str


@dataclass(frozen=True, slots=True)
class CachedVersion:
    """A version whose files for one ``ModelChoice`` are all in the cache."""

    version: int
    choice: ModelChoice
    labels: list[str]  # the head's outputs in order, then ``unknown_label`` (last output)
    unknown_label: str
    people: dict[str, Person]  # by label
    backbone: Path
    head: Path
    refiner: Path

    @property
    def roster(self) -> list[Person]:
        return [self.people[label] for label in self.labels if label in self.people]

    def without_people(self) -> CachedVersion:
        """The same files naming nobody: every output a stranger (the server has no version any more)."""
        return replace(self, people={})


def needed_files(manifest: dict[str, Any], choice: ModelChoice) -> list[str]:
    """The model files ``choice`` runs from this manifest: backbone, head, refiner."""
    variant = manifest.get("variants", {}).get(choice.variant)
    if variant is None:
        built = ", ".join(sorted(manifest.get("variants", {}))) or "none"
        raise WatchError(
            f"version {manifest.get('version')} has no {choice.variant} files (variants: {built}); "
            "the server's FACEFORGE_WORKER__FORMATS must include "
            f"{'onnx' if choice is ModelChoice.ONNX else 'tflite'}"
        )
    models = [name for name in variant["files"] if not name.endswith(".txt")]
    return [*models, choice.refiner]


def _as_version(manifest: dict[str, Any], choice: ModelChoice, blobs: Path) -> CachedVersion:
    files = manifest["files"]
    backbone, head, refiner = (blobs / files[name]["sha256"] for name in needed_files(manifest, choice))
    people = {p["label"]: Person(int(p["id"]), str(p["name"]), str(p["label"])) for p in manifest["people"]}
    return CachedVersion(
        version=int(manifest["version"]),
        choice=choice,
        labels=list(manifest["labels"]),
        unknown_label=str(manifest["unknown_label"]),
        people=people,
        backbone=backbone,
        head=head,
        refiner=refiner,
    )


def check_server_url(url: str) -> None:
    """A ``WatchError`` for a ``--server`` that can never work: a mistake to say at once, not a server
    to wait for (the agent retries an unreachable one)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if (
        parsed is None
        or parsed.scheme not in ("http", "https")
        or not parsed.host
        or any(c.isspace() for c in url)
        or not 0 < (parsed.port or 80) < 65536
    ):
        raise WatchError(f"--server must look like http://host:port, not {url!r}")


def _error_message(response: httpx.Response) -> str:
    """The message of the server's JSON error body, or what kind of answer it was."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError, httpx.StreamError):  # a streamed answer is not read
        return f"{response.reason_phrase} ({response.headers.get('content-type') or 'no content type'})"
    return str(message)


def server_failure(error: BaseException) -> str:
    """One line for a failed request to the server: httpx's text for an HTTP error status is two
    lines (a link to MDN under it), which broke a CLI's one-line reason in two."""
    if isinstance(error, httpx.HTTPStatusError):
        response = error.response
        said = f"{response.status_code} {response.reason_phrase} for {error.request.url}"
        if _error_code(response) is None:  # not a faceforge server's answer: nothing more to say
            return said
        return f"{said}: {_error_message(response)}"
    return " ".join(str(error).split()) or type(error).__name__


def _error_code(response: httpx.Response) -> str | None:
    """The ``code`` of the server's JSON error body ``{"error": {"code", "message"}}``, if it is one."""
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError, httpx.StreamError):  # a streamed answer is not read
        return None
    return code if isinstance(code, str) else None


class ServerClient:
    """The faceforge server's model routes: ``GET /api/v1/models/current`` and the version's files."""

    def __init__(self, url: str, api_key: str | None) -> None:
        check_server_url(url)
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT)

    def close(self) -> None:
        self._http.close()

    def current_version(self) -> int:
        """The server's current version; ``NoModelVersion`` when it has none (409 ``model_not_ready``)."""
        response = self._http.get(f"{API}/models/current")
        if response.status_code in (401, 403):
            # In the server's words: a server without keys refuses a name it is not reached by
            # (foreign_host: FACEFORGE_ALLOWED_HOSTS), which was blamed on a key nobody had given.
            raise WatchError(
                f"the server refused the request ({response.status_code}): {_error_message(response)}"
            )
        if response.status_code == 409 and _error_code(response) == NO_VERSION_CODE:
            raise NoModelVersion
        response.raise_for_status()
        return int(response.json()["version"])

    def manifest(self, version: int) -> dict[str, Any]:
        response = self._http.get(f"{API}/models/{version}/files/{MANIFEST_FILE}")
        response.raise_for_status()
        manifest: dict[str, Any] = json.loads(response.content)
        return manifest

    def download(self, version: int, name: str, target: Path, sha256: str) -> None:
        """Stream one file to ``target`` (atomically), refusing it unless its sha256 is ``sha256``.

        The file is written under a temporary name of its own (``core.atomic``), removed on any
        failure: two agents sharing a cache directory each write their own copy, and the first whole
        one is renamed into place (a fixed name let one truncate the other's download, which then
        installed a file with a hole whose sha256 had been computed over the stream)."""

        def write(temp: Path) -> None:
            digest = hashlib.sha256()
            with (
                self._http.stream("GET", f"{API}/models/{version}/files/{name}") as response,
                temp.open("wb") as handle,
            ):
                if response.is_error:
                    response.read()  # the error's own words, for server_failure (a short JSON body)
                response.raise_for_status()
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    handle.write(chunk)
            if digest.hexdigest() != sha256:
                raise WatchError(f"{name} of version {version} does not match its sha256 in the manifest")

        write_atomically(target, write)


class ModelStore:
    """The cache directory: the version in use, and fetching a newer one file by file."""

    def __init__(self, directory: Path, choice: ModelChoice) -> None:
        self.directory = directory
        self.choice = choice
        self.blobs = directory / "blobs"

    def cached(self) -> CachedVersion | None:
        """The version used last, if its files are all still on disk and whole."""
        path = self.directory / CURRENT_FILE
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_bytes())
            version = _as_version(manifest, self.choice, self.blobs)
        except (ValueError, KeyError, TypeError, WatchError) as error:
            log.warning("ignoring the cached model in %s: %s", self.directory, error)
            return None
        # By the manifest's names (the blobs are named by their sha256, which said nothing to a reader),
        # in the order needed_files gives them: backbone, head, refiner.
        names = needed_files(manifest, self.choice)
        paths = (version.backbone, version.head, version.refiner)
        missing = [name for name, blob in zip(names, paths, strict=True) if not blob.is_file()]
        if missing:
            log.warning(
                "the cached version %d lacks %s for --model %s: downloading",
                version.version,
                ", ".join(missing),
                self.choice.value,
            )
            return None
        return version

    def forget(self) -> None:
        """Forget the cached version: the server has none any more (every person was deleted), so a
        restart must not bring its people back. ``current.json`` goes, and the version's head (its
        people's templates); the backbone and refiner, the same in every version, stay for the next."""
        path = self.directory / CURRENT_FILE
        try:
            head: Path | None = _as_version(json.loads(path.read_bytes()), self.choice, self.blobs).head
        except (OSError, ValueError, KeyError, TypeError, WatchError):
            head = None
        path.unlink(missing_ok=True)
        if head is not None:
            head.unlink(missing_ok=True)

    def fetch(self, server: ServerClient, version: int) -> tuple[CachedVersion, list[str], list[str]]:
        """Make ``version`` the cached one, downloading only files whose sha256 is not on disk yet.
        Returns it, the names of the files downloaded and of those reused from the cache."""
        manifest = server.manifest(version)
        self.blobs.mkdir(parents=True, exist_ok=True)
        downloaded, reused = [], []
        for name in needed_files(manifest, self.choice):
            sha256 = manifest["files"][name]["sha256"]
            target = self.blobs / sha256
            if target.is_file():
                reused.append(name)
                continue
            server.download(version, name, target, sha256)
            downloaded.append(name)
        write_bytes_atomically(self.directory / CURRENT_FILE, json.dumps(manifest).encode())
        self._prune(manifest)
        return _as_version(manifest, self.choice, self.blobs), downloaded, reused

    def _prune(self, manifest: dict[str, Any]) -> None:
        """Delete blobs the new version does not use (the cache holds one version's files), and
        temporary files nobody has written to for ``STALE_TEMP_SECONDS`` (left by an agent that was
        killed while writing; another agent's download in progress writes to its own at least once
        per read timeout)."""
        kept = {entry["sha256"] for entry in manifest["files"].values()}
        for blob in self.blobs.iterdir():
            if blob.name not in kept and not blob.name.startswith("."):
                blob.unlink(missing_ok=True)
        stale = time.time() - STALE_TEMP_SECONDS
        for folder in (self.blobs, self.directory):
            # ``.*.part``: the one name every download had before (an earlier release's leftovers)
            for temp in [*folder.glob(".*.tmp"), *folder.glob(".*.part")]:
                with contextlib.suppress(OSError):  # gone meanwhile: another agent pruned it
                    if temp.is_file() and temp.stat().st_mtime < stale:
                        temp.unlink()
