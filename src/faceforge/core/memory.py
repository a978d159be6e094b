"""Process-wide memory tuning for long-running faceforge processes (serve, worker)."""

from __future__ import annotations

import ctypes
import gc
import logging

log = logging.getLogger(__name__)

# glibc's mallopt parameters: the number of malloc arenas, and the size from which a block is mmapped.
M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
ARENAS = 2
MMAP_FROM_BYTES = 8 << 20


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (like ``MALLOC_ARENA_MAX``); returns whether it was applied.

    Every thread that allocates gets an arena of its own by default, and exports build ~100 MB
    buffers on several threads at once, so freed memory stays scattered over many arenas: measured
    on the register-to-ready benchmark, peak RSS 2.96 GB by default and 2.31 GB with two arenas, at
    the same speed. A no-op on C libraries other than glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    applied = bool(mallopt(M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %d: %s", arenas, applied)
    return applied


def return_large_buffers(threshold: int = MMAP_FROM_BYTES) -> bool:
    """Give every block of ``threshold`` bytes or more its own mapping, returned to the system when
    freed; returns whether it was applied (glibc only).

    glibc raises its mapping threshold to the size of each mapped block freed (up to 32 MB), after
    which such blocks come from the arenas and stay in the process when freed: a reduced photo
    (~30 MB) once decoded kept its memory in every arena that decoded one. Fixing the threshold
    measured 380 -> 312 MB for one 40 MP PNG's analysis and 702 -> 522 MB for two in turn.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


def freeze_survivors() -> None:
    """Collect garbage, then exempt every object still alive from later collections (``gc.freeze``).

    The worker calls this between trainings, when what is alive is its long-lived state (PyTorch,
    coremltools and litert modules, cached backbones). coremltools runs ``gc.collect()`` at the end
    of every conversion, twice per version, and each full collection walked all of those objects:
    0.26 s each at 1,000 people. Objects are still freed by reference counting as before; only
    reference cycles among the frozen ones would outlive their use.
    """
    gc.collect()
    gc.freeze()
    trim_heap()


def trim_heap() -> bool:
    """Give the free memory at the top of glibc's heaps back to the system (``malloc_trim``); returns
    whether it was applied (glibc only).

    A version's build frees hundreds of megabytes (exports, verification sessions) that glibc keeps
    for later: measured on three face pipelines loaded and dropped, 737 MB resident before and
    292 MB after. The worker trims after each training, and the test suite, which opens and closes
    hundreds of apps in one process, after each test.
    """
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    return bool(malloc_trim(0))


def thaw_frozen() -> None:
    """Undo ``freeze_survivors`` when the worker stops inside a process that lives on (an app
    closed by its server or a test): what the worker froze, the app that held it included, becomes
    collectable again. Frozen, every closed app's cycles stayed: a gigabyte per app in the tests."""
    gc.unfreeze()
