"""Ctrl-C held over imports of large native libraries (``core.interrupts``), in real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from faceforge.core.interrupts import interrupts_held

# A process that sends itself SIGINT while it imports PyTorch (1-3 s of work), as a terminal's Ctrl-C
# would, then says whether the import finished whole and how the interrupt came out.
INTERRUPTED_IMPORT = textwrap.dedent(
    """
    import os, signal, sys, threading
    from faceforge.core.interrupts import import_held
    # As in a terminal: a process started in the background by a non-interactive shell (CI's) has
    # SIGINT ignored, and Python then keeps it so.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        {importing}
    except KeyboardInterrupt:
        import torch
        print("interrupted", hasattr(torch, "autograd") and hasattr(torch, "nn"))
        sys.exit(130)
    print("imported, not interrupted")
    """
)


def test_an_interrupted_import_of_pytorch_finishes_and_then_stops() -> None:
    """Interrupted half-way, ``import torch`` left a half-initialised module behind (a build failed
    later with "partially initialized module 'torch' has no attribute 'autograd'", or crashed), or
    the interrupt was swallowed and the build ran on to exit 0. Held, the import finishes whole and
    the interrupt is raised after it."""
    held = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_IMPORT.format(importing='import_held("torch")')],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert held.returncode == 130 and held.stdout.strip() == "interrupted True", held.stdout + held.stderr


def test_an_interrupt_held_is_raised_when_the_block_ends() -> None:
    """Raised as the handler before it would have: KeyboardInterrupt under Python's own (a
    terminal's), nothing where SIGINT is ignored (a process a non-interactive shell started in the
    background, as CI's pytest is)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        reached = False
        with pytest.raises(KeyboardInterrupt), interrupts_held():
            signal.raise_signal(signal.SIGINT)
            reached = True  # not raised inside
        assert reached
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
        with interrupts_held():
            pass  # nothing held, nothing raised
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with interrupts_held():
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # still ignored, and nothing raised
    finally:
        signal.signal(signal.SIGINT, before)
