"""Children that stop when the process that started them is gone.

A server converts weights in child processes (the embedding graph's export and quantisation, the
split MTCNN graphs, the device backbones): minutes of both cores, holding nothing but their own
output. A parent that ends normally ends them (it waits, or they are daemonic), but one killed
outright (SIGKILL, the OOM killer) left them converting for minutes for nobody, beside the server
that replaced it and converted the same again. Linux's parent-death signal would need
``preexec_fn``, which is unsafe in a process with threads, so the child watches instead: its parent
id changes when the parent is gone. The API processes of ``serve --workers N`` watch their
supervisor the same way: killed outright, it left them serving its port with nobody to stop them."""

from __future__ import annotations

import _thread
import logging
import os
import signal
import threading
import time
from types import FrameType

log = logging.getLogger(__name__)

# Set by a parent for a ``python -m`` child (``child_environment``): the parent's process id.
PARENT_PID_ENV = "FACEFORGE_PARENT_PID"
WATCH_INTERVAL_SECONDS = 0.5
# After the stop is raised, how long the child may take to clean up (temporary files of atomic writes
# are removed as the exception unwinds) before it exits regardless: a native call that never returns
# to Python would otherwise keep it running.
CLEAN_UP_SECONDS = 30.0


def child_environment() -> dict[str, str]:
    """This process's environment and its id, for a child that calls
    ``stop_when_orphaned_from_environment``."""
    return {**os.environ, PARENT_PID_ENV: str(os.getpid())}


def parent_from_environment() -> int | None:
    """The parent named by ``PARENT_PID_ENV``; ``None`` without it (the command run by hand, from a
    shell that may well exit first)."""
    value = os.environ.get(PARENT_PID_ENV, "")
    return int(value) if value.isdigit() else None


def stop_when_orphaned_from_environment() -> None:
    """``stop_when_orphaned`` for the parent named by ``PARENT_PID_ENV``; nothing without it."""
    parent = parent_from_environment()
    if parent is not None:
        stop_when_orphaned(parent)


def stop_when_orphaned(parent: int) -> None:
    """Raise ``SystemExit`` in this process's main thread once ``parent`` is no longer its parent, and
    exit ``CLEAN_UP_SECONDS`` later if it is still running. Call it from the main thread.

    The stop arrives as SIGTERM's handler, installed here, so a real SIGTERM cleans up the same way.
    Not as SIGINT's (``KeyboardInterrupt``): a process started in the background by a shell inherits
    SIGINT ignored, and Python then neither raises nor simulates it (a CI run's conversion children
    carried on to the end that way)."""
    signal.signal(signal.SIGTERM, _stop)
    terminate_when_orphaned(parent, "conversion")


def terminate_when_orphaned(parent: int, what: str) -> None:
    """Once ``parent`` is no longer this process's parent, run the main thread's SIGTERM handler as if
    the signal had come (whichever handler is installed then: a server's own shuts down gracefully),
    and exit ``CLEAN_UP_SECONDS`` later if the process is still running. ``what`` names this process
    in the log line."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_INTERVAL_SECONDS)
        log.warning("process %d that started this %s is gone: stopping", parent, what)
        _thread.interrupt_main(signal.SIGTERM)
        time.sleep(CLEAN_UP_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="faceforge-parent-watch", daemon=True).start()


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by {signal.Signals(signum).name}")
