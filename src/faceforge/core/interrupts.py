"""Ctrl-C held over the imports of large native libraries.

A ``KeyboardInterrupt`` raised half-way through ``import torch`` (or coremltools) leaves the library
half-initialised, or is swallowed by the library's own error handling: a `faceforge build`
interrupted while its training first imported PyTorch failed later with "partially initialized
module 'torch' has no attribute 'autograd'" (or a segmentation fault), or ignored the interrupt and
finished with exit 0 (a new user's trial). Held, the interrupt is raised once the import is done,
where the caller's own handling of Ctrl-C applies.
"""

from __future__ import annotations

import importlib
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def interrupts_held() -> Iterator[None]:
    """SIGINT inside the block is held and raised as ``KeyboardInterrupt`` when the block ends. Only
    the main thread can set a handler, and only it ever gets ``KeyboardInterrupt``: elsewhere (a
    server's training thread) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:  # sent again to whatever handled it before: KeyboardInterrupt, ignored, or the caller's
            signal.raise_signal(signal.SIGINT)


def import_held(*modules: str) -> None:
    """Import ``modules`` (dotted names) with Ctrl-C held (module docstring)."""
    with interrupts_held():
        for name in modules:
            importlib.import_module(name)
