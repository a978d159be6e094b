"""A bound on concurrent vision work (decode, detect, embed) across requests.

Each admitted request holds one slot while its photos are analysed; a few more may wait for a slot;
beyond that, requests are refused at once with ``BusyError`` (503 + Retry-After) instead of piling
up decoded 40 MP images until the machine swaps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from faceforge.domain.errors import BusyError


class VisionGate:
    def __init__(self, *, concurrency: int, queue: int) -> None:
        self._slots = threading.BoundedSemaphore(concurrency)
        self._admitted = 0
        self._limit = concurrency + queue
        self._lock = threading.Lock()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self._admitted >= self._limit:
                raise BusyError("the server is busy analysing other photos; retry shortly")
            self._admitted += 1
        try:
            with self._slots:
                yield
        finally:
            with self._lock:
                self._admitted -= 1
