"""Write files so that readers only ever see a complete file: temp name, fsync, rename.

The one place faceforge writes files durably: photos, converted weights, cached backbones, model
versions (whose staging directory is renamed as a whole, see ``storage.version_store``)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path


def write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temp_path)`` then fsync and rename the result to ``target``.

    The temporary file sits in the target's directory so the rename is atomic; on any error it is
    removed and ``target`` is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _new_temp_file(target)
    mode = stat.S_IMODE(temp.stat().st_mode)
    try:
        write(temp)
        if stat.S_IMODE(temp.stat().st_mode) != mode:
            # ``write`` replaced the file with one of its own: safetensors' ``save_file`` writes
            # through a 0600 temporary and renames it over ``temp``.
            os.chmod(temp, mode)
        with temp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def _new_temp_file(target: Path) -> Path:
    """An empty file beside ``target`` under a fresh name, created with the process's umask like
    any other file it writes (``tempfile.mkstemp`` would make it 0600, so photos and backbones would
    be unreadable to a backup job or file server that reads the rest of the home)."""
    while True:
        temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temp
        except FileExistsError:
            continue


def write_durably(target: Path, data: bytes) -> None:
    """Write ``data`` to a new file and fsync it, without a rename: for files inside a staging
    directory that is itself renamed into place once complete."""
    with target.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` survive a power cut."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_bytes_atomically(target: Path, data: bytes) -> None:
    def write(temp: Path) -> None:
        temp.write_bytes(data)

    write_atomically(target, write)


def copy_atomically(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source`` of its own (never a link to it), appearing whole."""

    def write(temp: Path) -> None:
        shutil.copyfile(source, temp)

    write_atomically(target, write)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
