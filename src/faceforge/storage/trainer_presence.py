"""Whether a training worker is running for this database: whether anyone holds the trainer's lease
(``building.worker.lease``: a PostgreSQL advisory lock, or an ``flock`` on a file beside a SQLite
database). Both are the operating system's or the database's, so they say the truth even of a
worker that was killed: the lock went with it.

API processes read it while a training request waits: under ``serve --workers N`` they train nothing
themselves, and a request with no worker to build it stayed "queued" with nothing saying why.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

# pg_locks shows a bigint advisory key as two 32-bit halves (classid, objid) with objsubid 1.
ADVISORY_LOCK_HELD = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
    " AND classid = CAST(:high AS bigint)::oid AND objid = CAST(:low AS bigint)::oid{holder})"
)
PLACE = "SELECT current_database() || '/' || current_schema()"


def advisory_key(place: str) -> int:
    """The lease's advisory lock key for a database and schema (``PLACE``), so that separate
    deployments sharing a server do not contend."""
    return int.from_bytes(
        hashlib.sha256(f"faceforge-trainer:{place}".encode()).digest()[:8], "big", signed=True
    )


def key_halves(key: int) -> dict[str, int]:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF}


def lease_file(database: str) -> Path:
    """The file a SQLite database's trainer holds an ``flock`` on."""
    return Path(f"{database}.trainer-lease")


def trainer_running(session: Session) -> bool | None:
    """Whether some process holds the trainer's lease now; ``None`` for a database without one."""
    bind = session.get_bind()
    url = bind.engine.url  # a Connection's engine is its own; an Engine's, itself
    if bind.dialect.name == "postgresql":
        key = advisory_key(session.execute(text(PLACE)).scalar_one())
        query = text(ADVISORY_LOCK_HELD.format(holder=""))
        return bool(session.execute(query, key_halves(key)).scalar_one())
    database = url.database
    if bind.dialect.name == "sqlite" and database and database != ":memory:":
        return _locked(lease_file(database))
    return None


def _locked(path: Path) -> bool:
    """Whether someone holds an exclusive ``flock`` on ``path``. A shared lock taken to find out is
    dropped at once (a worker trying for the lease in that instant stands by until its next poll)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False  # no worker ever ran here
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # also drops the shared lock, if taken
    return False
