"""A bound on concurrent vision work (decode, detect, embed) across requests.

Each admitted request holds one slot while its photos are analysed; a few more may wait for a slot;
beyond that, requests are refused at once with ``BusyError`` (503 + Retry-After) instead of piling
up decoded 40 MP images until the machine swaps. A slot also holds the pixels its photos decode at
once (as their headers say): while those of every slot would exceed the pixel budget, a slot waits,
so memory is bounded by pixels, not by requests (twelve concurrent identifies of one 40 MP PNG took
a process to 4 GB). A photo larger than the whole budget runs alone. Slots in use tell ``awake``
when photos come and go, so that it keeps the cores awake through a stream of them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from faceforge.core.errors import BusyError
from faceforge.serving.awake_cores import AwakeCores


class VisionGate:
    def __init__(
        self, *, concurrency: int, queue: int, pixels: int | None = None, awake: AwakeCores | None = None
    ) -> None:
        self._awake = awake
        self._slots = threading.BoundedSemaphore(concurrency)
        self._admitted = 0
        self._limit = concurrency + queue
        self._lock = threading.Lock()
        self._pixel_budget = pixels
        self._pixels_in_use = 0
        self._room = threading.Condition()

    @contextmanager
    def slot(self, pixels: int = 0) -> Iterator[None]:
        """Hold a slot and ``pixels`` of the budget while the ``with`` block analyses photos."""
        with self._lock:
            if self._admitted >= self._limit:
                raise BusyError("the server is busy analysing other photos; retry shortly")
            self._admitted += 1
        try:
            with self._slots, self._holding(pixels), self._working():
                yield
        finally:
            with self._lock:
                self._admitted -= 1

    @contextmanager
    def pixels(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` of the budget, waiting for room but never refused, and without a slot:
        for photos decoded to be shown (a list asks for dozens at once), not analysed."""
        with self._holding(pixels):
            yield

    @contextmanager
    def _working(self) -> Iterator[None]:
        if self._awake is None:
            yield
            return
        self._awake.working()
        try:
            yield
        finally:
            self._awake.resting()

    @contextmanager
    def _holding(self, pixels: int) -> Iterator[None]:
        budget = self._pixel_budget
        if budget is None or pixels <= 0:
            yield
            return
        with self._room:
            while self._pixels_in_use and self._pixels_in_use + pixels > budget:
                self._room.wait()
            self._pixels_in_use += pixels
        try:
            yield
        finally:
            with self._room:
                self._pixels_in_use -= pixels
                self._room.notify_all()
