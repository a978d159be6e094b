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
def interrupts_held(*signals: signal.Signals) -> Iterator[None]:
    """``signals`` (SIGINT if none) inside the block are held and sent again when the block ends, to
    the handlers they had (SIGINT's default raises ``KeyboardInterrupt``). Only the main thread can
    set a handler, and only it runs them: elsewhere (a server's training thread) this does nothing.
    Blocking the signal instead (``pthread_sigmask``) holds it for one thread only: the kernel gives
    it to another (ONNX Runtime's, PyTorch's), and Python runs the handler in the main thread anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    previous = {number: signal.signal(number, hold) for number in signals or (signal.SIGINT,)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for again in dict.fromkeys(held):  # to whatever handled it before: raised, ignored, the caller's
            signal.raise_signal(again)


def import_held(*modules: str) -> None:
    """Import ``modules`` (dotted names) with Ctrl-C held (module docstring)."""
    with interrupts_held():
        for name in modules:
            importlib.import_module(name)
