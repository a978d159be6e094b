"""Exclusive file locks between processes, waited for at most a given time.

A conversion done once per machine (the embedding graph, the on-device backbones) is guarded by an
``flock`` so two processes do not both do it. A process that dies drops its lock, but one that hangs
(stopped, stuck in a converter) would keep every other process waiting for ever: callers wait for a
bounded time and fail with a message instead.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLL_SECONDS = 0.1


@contextmanager
def exclusive_lock(path: Path, *, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block; raises
    ``TimeoutError`` if another process still holds it after ``timeout`` seconds."""
    with path.open("w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{path} is still locked by another process after {timeout:.0f}s"
                    ) from None
                time.sleep(POLL_SECONDS)
        yield  # closing the file drops the lock
