"""Keeps the machine's idle cores awake between the photos of a steady stream.

On a virtual machine an idle core halts and the hypervisor takes it away; it comes back slow. Measured
on a 2-core Intel Xeon VM (cpuidle ``haltpoll`` with no poll window), one 250 px photo analysed
in-process: 33 ms back to back, 43 ms when each photo came 100 ms after the last (every stage slower:
P-Net's pyramid 7.4 -> 11.2 ms, R-Net 7.1 -> 10.0 ms), and the second core bought nothing. With a
spinner at the lowest priority on each core, the same paced photos took 34.8 ms (34.1 back to back):
the cores never halt, and the spinner gives way to any other work at once (``SCHED_IDLE``). Through
the API at 10 identifies/s: p50 50 -> 42 ms, p99 69 -> 55 ms (``bench.api_load``).

So when a photo follows the previous one within ``window`` (a gap that polling would have bridged),
each core this process may run on gets a poller (a small process, ``SCHED_IDLE``, pinned to the core)
that spins until ``window`` after the photo, as Linux's haltpoll polls only while polling pays. A
lone photo never polls, and a server without photos uses no CPU. Not under a CPU quota (cgroup
``cpu.max``): spinning would spend the quota the photos need. Linux only.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# Where a process sees its own CPU quota: cgroup v2 ("max 100000" without one), else v1 (-1 without).
QUOTA_FILES = (
    Path("/sys/fs/cgroup/cpu.max"),
    Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
    Path("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"),
)
# A poll request on a poller's stdin: the monotonic instant (seconds, system-wide) to spin until.
_DEADLINE = struct.Struct("<d")


def cpu_quota(files: Sequence[Path] = QUOTA_FILES) -> str | None:
    """This process's cgroup CPU quota as its file says it, or ``None`` without one."""
    for path in files:
        try:
            fields = path.read_text().split()
        except OSError:
            continue
        if fields and fields[0] not in ("max", "-1"):
            return f"{path}: {' '.join(fields)}"
    return None


def why_not(quota_files: Sequence[Path] = QUOTA_FILES) -> str | None:
    """Why this process cannot keep cores awake, or ``None`` if it can."""
    if not hasattr(os, "sched_setscheduler") or not hasattr(os, "sched_getaffinity"):
        return "this system cannot run a process at idle priority on a given core"
    quota = cpu_quota(quota_files)
    if quota is not None:
        return f"a CPU quota applies ({quota}): polling would spend it"
    return None


class AwakeCores:
    """Tells the pollers when photos come and go (``working`` / ``resting``, from any thread)."""

    def __init__(
        self,
        window_ms: float,
        *,
        cpus: Iterable[int] | None = None,
        quota_files: Sequence[Path] = QUOTA_FILES,
    ) -> None:
        """``window_ms``: how long after a photo the cores poll, and the longest gap between photos
        that counts as a stream; 0 turns polling off. ``cpus``: the cores to keep awake (default:
        those this process may run on)."""
        self.window = window_ms / 1000.0
        self.off_because = "FACEFORGE_IDLE_POLL_MS is 0" if window_ms <= 0 else why_not(quota_files)
        self._cpus = sorted(os.sched_getaffinity(0) if cpus is None else cpus) if not self.off_because else []
        self._lock = threading.Lock()
        self._busy = 0
        self._last_end: float | None = None
        self._stream = False
        self._pollers: list[subprocess.Popen[bytes]] = []
        self._closed = False
        if self.off_because:
            log.info("idle cores are not kept awake between photos: %s", self.off_because)

    @property
    def poller_pids(self) -> list[int]:
        with self._lock:
            return [poller.pid for poller in self._pollers if poller.poll() is None]

    def working(self) -> None:
        """A photo's analysis begins."""
        with self._lock:
            now = time.monotonic()
            if self._busy == 0:
                self._stream = self._last_end is not None and now - self._last_end <= self.window
            self._busy += 1
            if self._stream:
                self._poll_until(now + self.window)

    def resting(self) -> None:
        """A photo's analysis ends (whether or not it succeeded)."""
        with self._lock:
            self._busy -= 1
            if self._busy:
                return
            now = time.monotonic()
            self._last_end = now
            if self._stream:
                self._poll_until(now + self.window)

    def close(self) -> None:
        """Stop the pollers (each ends when its stdin closes) and start no more."""
        with self._lock:
            self._closed = True
            pollers, self._pollers = self._pollers, []
        for poller in pollers:
            if poller.stdin is not None:
                poller.stdin.close()
        for poller in pollers:
            try:
                poller.wait(timeout=5)
            except subprocess.TimeoutExpired:
                poller.kill()
                poller.wait()

    def _poll_until(self, deadline: float) -> None:
        """Under the lock: every poller spins until ``deadline``; started on first need."""
        if self.off_because or self._closed:
            return
        if not self._pollers:
            self._pollers = [self._start(cpu) for cpu in self._cpus]
        request = _DEADLINE.pack(deadline)
        for poller in self._pollers:
            if poller.stdin is None or poller.stdin.closed:
                continue
            try:
                os.write(poller.stdin.fileno(), request)
            except BlockingIOError:
                pass  # its pipe is full of requests it has not read yet: it is spinning already
            except OSError:  # it ended (killed, or it could not take idle priority): no more polls
                poller.stdin.close()

    @staticmethod
    def _start(cpu: int) -> subprocess.Popen[bytes]:
        # stdout and stderr go nowhere: a poller must not hold this process's output pipes open.
        poller = subprocess.Popen(
            [sys.executable, "-m", __name__, str(cpu)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert poller.stdin is not None
        os.set_blocking(poller.stdin.fileno(), False)  # a request never waits on a poller
        return poller


def _poll(cpu: int) -> None:
    """A poller: at idle priority on ``cpu``, spin until the last deadline read from stdin, then sleep
    until the next one; end when stdin closes (the API process ended or closed it)."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # raises rather than spin above idle
    os.sched_setaffinity(0, {cpu})
    requests = sys.stdin.fileno()
    os.set_blocking(requests, False)
    deadline = 0.0
    while True:
        if time.monotonic() >= deadline:
            select.select([requests], [], [])
        try:
            data = os.read(requests, 4096)
        except BlockingIOError:
            continue
        if not data:
            return
        whole = len(data) - len(data) % _DEADLINE.size  # requests are written whole (8 < PIPE_BUF)
        if whole:
            deadline = _DEADLINE.unpack_from(data, whole - _DEADLINE.size)[0]


if __name__ == "__main__":
    _poll(int(sys.argv[1]))
