"""One checksum scheme for large files made once and then shared by many versions (the embedding
graph, the cached on-device backbones and refiners): the sha256 recorded when the file was made, in
``<name>.sha256`` beside it.

Versions list these files' digests without reading hundreds of megabytes each time
(``recorded_sha256``), and the cache re-hashes a file against its record before linking it into a
version (``matches_record``), so a damaged file is never published.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from faceforge.core.atomic import file_sha256, write_bytes_atomically

SUFFIX = ".sha256"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def record_path(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def record_sha256(path: Path, digest: str | None = None, *, at: Path | None = None) -> str:
    """Record ``digest`` (default: hash the file now) for ``path``; ``at`` is where the record goes
    when the file is about to be moved there. Returns the digest."""
    digest = digest or file_sha256(path)
    write_bytes_atomically(record_path(at or path), f"{digest}\n".encode())
    return digest


def write_with_checksum(target: Path, data: bytes) -> None:
    """Write ``data`` atomically with its record (the record first: a record without its file is
    harmless, the file is simply made again)."""
    record_sha256(target, hashlib.sha256(data).hexdigest())
    write_bytes_atomically(target, data)


def _recorded(path: Path) -> str | None:
    try:
        text = record_path(path).read_text().strip()
    except FileNotFoundError:
        return None
    return text if _DIGEST.match(text) else None


def recorded_sha256(path: Path) -> str:
    """The digest recorded for ``path``; a file made before records were kept is hashed and recorded."""
    return _recorded(path) or record_sha256(path)


def matches_record(path: Path) -> bool:
    """Whether the file's content still has the digest recorded when it was made (False without one)."""
    recorded = _recorded(path)
    return recorded is not None and recorded == file_sha256(path)
