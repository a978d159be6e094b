"""The trainer's lease: at most one training worker per deployment holds it, and the operating
system or database releases it the moment that worker's process dies.

A worker that has just acquired the lease therefore knows that a training still marked ``running`` by
another worker is orphaned (its worker was killed, or lost the lease) and takes it over at once,
instead of waiting for the dead worker's heartbeat to go stale. Workers that do not get the lease
stand by and try again each poll.

A lease can be lost without its holder dying: a PostgreSQL restart, a failover or an administrator's
``pg_terminate_backend`` ends the session and with it the lock, and a standby takes it. The holder
therefore verifies the lease on every poll and drops it (stands by) when it is gone or its
connection fails; otherwise both would train, each failing the other's running version.

- PostgreSQL: a session-level advisory lock, held on a connection of its own for the worker's life.
  The key is derived from the database and schema, so separate deployments sharing a server do not
  contend.
- SQLite: an exclusive ``flock`` on a file beside the database (only processes on this machine can
  share a SQLite database, and they see the same lock).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text

from faceforge.storage.trainer_presence import ADVISORY_LOCK_HELD, PLACE, advisory_key, key_halves, lease_file

log = logging.getLogger(__name__)


class WorkerLease(Protocol):
    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True if this worker holds it now."""
        ...

    def verify(self) -> bool:
        """Whether this worker still holds the lease it acquired. A lease found lost, or whose check
        fails (connection errors included), is released: the caller stands by and may try again."""
        ...

    def release(self) -> None: ...


class PostgresLease:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.connection: Connection | None = None
        self.key: int | None = None  # the advisory lock's key, known once acquired

    def try_acquire(self) -> bool:
        if self.connection is not None:
            return True
        connection = self.engine.connect()
        try:
            place = connection.execute(text(PLACE)).scalar_one()
            key = advisory_key(place)
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
        self.connection, self.key = connection, key
        return True

    def verify(self) -> bool:
        if self.connection is None or self.key is None:
            return False
        try:
            query = text(ADVISORY_LOCK_HELD.format(holder=" AND pid = pg_backend_pid()"))
            held = bool(self.connection.execute(query, key_halves(self.key)).scalar_one())
            self.connection.commit()
        except Exception:  # the session is gone (server restart, failover, terminated backend)
            log.warning("the trainer's lease connection failed; the lease is dropped", exc_info=True)
            self.release()
            return False
        if not held:
            self.release()
        return held

    def release(self) -> None:
        if self.connection is not None:
            try:
                if self.key is not None and not self.connection.invalidated:
                    # Unlocked before the session ends: the server drops a closed session's locks when
                    # its backend exits, a moment later, and an API process reading pg_locks in that
                    # moment still saw a trainer running (a loaded CI machine did).
                    self.connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                    self.connection.commit()
            except Exception:  # the session is gone already, and its lock with it
                log.debug("the trainer's lease connection was gone at release", exc_info=True)
            finally:
                self.connection.invalidate()  # ends the session (and the lock, if the unlock failed)
                self.connection = self.key = None


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

    def verify(self) -> bool:
        # Only this process can drop an flock it holds (closing the descriptor, or exiting).
        return self.fd is not None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def lease_for(engine: Engine) -> WorkerLease:
    if engine.dialect.name == "postgresql":
        return PostgresLease(engine)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return FileLease(lease_file(database))
    raise ValueError(f"no worker lease for {engine.dialect.name} databases")
