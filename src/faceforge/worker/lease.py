"""The trainer's lease: at most one training worker per deployment holds it, and the operating
system or database releases it the moment that worker's process dies.

A worker that acquires the lease therefore knows that a training still marked ``running`` by another
worker is orphaned (its worker was killed) and takes it over at once, instead of waiting for the dead
worker's heartbeat to go stale. Workers that do not get the lease stand by and try again each poll.

- PostgreSQL: a session-level advisory lock, held on a connection of its own for the worker's life.
  The key is derived from the database and schema, so separate deployments sharing a server do not
  contend.
- SQLite: an exclusive ``flock`` on a file beside the database (only processes on this machine can
  share a SQLite database, and they see the same lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text


class WorkerLease(Protocol):
    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True if this worker holds it now."""
        ...

    def release(self) -> None: ...


class PostgresLease:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.connection: Connection | None = None

    def try_acquire(self) -> bool:
        if self.connection is not None:
            return True
        connection = self.engine.connect()
        try:
            place = connection.execute(
                text("SELECT current_database() || '/' || current_schema()")
            ).scalar_one()
            key = int.from_bytes(
                hashlib.sha256(f"faceforge-trainer:{place}".encode()).digest()[:8], "big", signed=True
            )
            held = bool(
                connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one()
            )
            connection.commit()  # the lock is the session's, not the transaction's
        except BaseException:
            connection.close()
            raise
        if not held:
            connection.close()
            return False
        self.connection = connection
        return True

    def release(self) -> None:
        if self.connection is not None:
            self.connection.invalidate()  # ends the session, which releases the lock
            self.connection = None


class FileLease:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        if self.fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def lease_for(engine: Engine) -> WorkerLease:
    if engine.dialect.name == "postgresql":
        return PostgresLease(engine)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return FileLease(Path(f"{database}.trainer-lease"))
    raise ValueError(f"no worker lease for {engine.dialect.name} databases")
