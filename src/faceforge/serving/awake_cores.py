"""Keeps the machine's idle cores awake between the photos of a steady stream.

On a KVM virtual machine an idle core halts and the hypervisor takes it away; it comes back slow.
Measured on a 2-core Intel Xeon VM (cpuidle driver ``haltpoll``, its own poll window 0), one 250 px
photo analysed in-process: 33 ms back to back, 43 ms when each photo came 100 ms after the last
(every stage slower: P-Net's pyramid 7.4 -> 11.2 ms, R-Net 7.1 -> 10.0 ms), and the second core
bought nothing. With a spinner at the lowest priority on each core the same paced photos took
34.8 ms (34.1 back to back): the cores never halt, and a spinner gives way as soon as a thread of
ours, or anyone's, wakes on its core (``SCHED_IDLE``). Through the API at 10 identifies/s: p50
50 -> 42.6 ms, p99 69 -> 55.9 ms (``bench.api_load``).

So when a photo follows the previous one within the window (a gap that polling would have bridged),
each core this process may run on gets a poller (a small process at ``SCHED_IDLE``, pinned to the
core) that spins from the end of a photo until the next begins or the window ends, as Linux's
haltpoll polls only while polling pays. It never spins while any API process of the server analyses a
photo (or receives or answers a photo request, ``serving.api.photo_requests``): the processes of
``serve --workers N`` and their pollers share one page of memory (``PhotosPage``) that says who has a
photo in progress and when the last one ended (a process that cannot open it says so in its log and
counts its own photos only). The moments a
photo's threads wait for each other are short enough for the guest's own polling, and a spinner made
each wake-up cost more (the Intel VM above: 33 ms back to back without spinners; an AMD EPYC Zen 4 VM:
29.0 against 35.0 ms with spinners during the photos too, ``working``). A lone photo never polls,
and a server without photos uses no CPU. Spinning is not free: it shows
as busy CPU, takes a hyperthread's sibling's share and a burstable instance's credits. So it is on
by default only where it was measured to pay (a ``haltpoll`` guest of up to ``AUTO_MAX_CPUS``
cores), never under a CPU quota smaller than the cores (it would spend what the photos need), and
``FACEFORGE_IDLE_POLL_MS`` sets it (0: off). Linux only.
"""

from __future__ import annotations

import fcntl
import logging
import math
import mmap
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

AUTO_WINDOW_MS = 200.0  # a stream down to 5 photos/s (the server's, whichever process takes them)
AUTO_MAX_CPUS = 8
CPUIDLE_DRIVER = Path("/sys/devices/system/cpu/cpuidle/current_driver")
CGROUPS = Path("/sys/fs/cgroup")
# A poll request on a poller's stdin: the monotonic instant (seconds, system-wide) to spin until.
_DEADLINE = struct.Struct("<d")
# The page several API processes share (``PhotosPage``): its path, set by ``serve --workers N``.
SHARED_PAGE_ENV = "FACEFORGE_PHOTOS_PAGE"
_PAGE_BYTES = mmap.PAGESIZE
_SLOTS = 128  # serve --workers allows 64; more slots leave room for processes that replace others
_LAST_END = _SLOTS  # offset of the monotonic instant the server's last photo ended (a double)
_HOLDER = struct.Struct("<qq")  # a slot's process: its id and its start (clock ticks after boot)
_HOLDERS = 2 * _SLOTS  # offset of the slots' holders
_MAGIC = b"faceforge photos in progress, v1"  # what a page opened by path must begin its tail with
_MAGIC_AT = _HOLDERS + _SLOTS * _HOLDER.size
_BUSY = b"\x01"


def _memory_file() -> int:
    """A page-sized file that lives in memory and in no folder, closed on exec."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("faceforge-photos", os.MFD_CLOEXEC)
    else:  # Pythons built against a C library older than the call (glibc 2.27)
        fd, name = tempfile.mkstemp(prefix="faceforge-photos-")
        os.unlink(name)
    try:
        os.ftruncate(fd, _PAGE_BYTES)
        os.pwrite(fd, _MAGIC, _MAGIC_AT)
    except OSError:
        os.close(fd)
        raise
    return fd


def create_shared_page() -> tuple[int, Path] | None:
    """A page for ``serve --workers N``'s processes to share: its descriptor, which the caller holds
    open while they run, and the path they open it by (``/proc/<caller>/fd/<descriptor>``). In no
    folder, so nothing is left behind however the processes end (a file in /dev/shm would outlive a
    supervisor killed outright). ``None``, said in the log, where it cannot be made: each process
    then counts its own photos."""
    if not Path("/proc/self/fd").is_dir():
        return None  # no other platform keeps the cores awake
    try:
        fd = _memory_file()
    except OSError as error:
        log.warning("the API processes count only their own photos: no page to share (%s)", error)
        return None
    return fd, Path(f"/proc/{os.getpid()}/fd/{fd}")


def _env_page() -> Path | None:
    value = os.environ.get(SHARED_PAGE_ENV, "")
    return Path(value) if value else None


def _started(pid: int) -> int | None:
    """When the process ``pid`` started (clock ticks after boot), or ``None`` if it has ended (a zombie
    too: it awaits only its parent's wait)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()  # after the name, which may hold anything
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])  # the 22nd field of the line


def _holds(page: mmap.mmap, slot: int) -> bool:
    """Whether the slot's process lives: the same id and start, so not a new process given the id."""
    pid, started = _HOLDER.unpack_from(page, _HOLDERS + _HOLDER.size * slot)
    return bool(pid > 0 and _started(pid) == started)


def _anyone_busy(page: mmap.mmap) -> bool:
    """Whether a live process has a photo in progress. A process killed in the middle of one leaves
    its mark until another process claims a slot: it is not counted meanwhile."""
    slot = page.find(_BUSY, 0, _SLOTS)
    while slot >= 0:
        if _holds(page, slot):
            return True
        slot = page.find(_BUSY, slot + 1, _SLOTS)
    return False


class PhotosPage:
    """Which of a server's API processes has a photo in progress, and when the server's last photo
    ended: one page of memory that the processes write (each its own slot, one byte a photo) and their
    pollers read as they spin. Without it each process counted only its own photos, and with two API
    processes one's pollers spun through the other's photos (identify p50 42 ms at 10/s where one
    process took 35). ``path``: the path ``create_shared_page`` gave; ``None``: this process's own."""

    def __init__(self, path: Path | None) -> None:
        self.fd = _memory_file() if path is None else os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            # Anything else named by the setting (a stale value) is neither written nor read.
            if os.pread(self.fd, len(_MAGIC), _MAGIC_AT) != _MAGIC:
                raise OSError(f"{path} is not a page of photos in progress")
            self._page = mmap.mmap(self.fd, _PAGE_BYTES)
            self.slot = self._claim()
        except BaseException:
            os.close(self.fd)
            raise

    def _claim(self) -> int:
        """A slot no live process holds; the marks of ended processes are cleared on the way. Under an
        exclusive lock: processes start together."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            free = None
            for slot in range(_SLOTS):
                if not _holds(self._page, slot):
                    self._page[slot] = 0
                    _HOLDER.pack_into(self._page, _HOLDERS + _HOLDER.size * slot, 0, 0)
                    free = slot if free is None else free
            if free is None:
                raise OSError(f"all {_SLOTS} slots are held by live processes")
            started = _started(os.getpid())
            if started is None:
                raise OSError("this process's start is not in /proc")
            _HOLDER.pack_into(self._page, _HOLDERS + _HOLDER.size * free, os.getpid(), started)
            return free
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def begin(self) -> float:
        """This process has a photo in progress; returns when the server's last photo ended."""
        self._page[self.slot] = 1  # one byte: written whole, never seen half-written
        return float(_DEADLINE.unpack_from(self._page, _LAST_END)[0])

    def end(self, now: float) -> None:
        # The instant, then the mark: a photo that begins once the mark is clear sees this end.
        _DEADLINE.pack_into(self._page, _LAST_END, now)
        self._page[self.slot] = 0

    def anyone_busy(self) -> bool:
        return _anyone_busy(self._page)

    def close(self) -> None:
        self._page[self.slot] = 0
        _HOLDER.pack_into(self._page, _HOLDERS + _HOLDER.size * self.slot, 0, 0)
        self._page.close()
        os.close(self.fd)


def _cgroup_quota_files(own: str, root: Path) -> list[Path]:
    """The quota files of this process's cgroup and of each of its ancestors, from ``/proc/self/cgroup``'s
    text: cgroup v2's ``cpu.max`` ("max 100000" without a quota), v1's ``cpu.cfs_quota_us`` (-1)."""
    files: list[Path] = []
    for line in own.splitlines():
        hierarchy, controllers, path = [*line.split(":", 2), "", ""][:3]
        if hierarchy == "0" and controllers == "":
            base, name = root, "cpu.max"
        elif "cpu" in controllers.split(","):
            base, name = root / controllers, "cpu.cfs_quota_us"
            if not base.is_dir():  # mounted as cpu,cpuacct with a symlink named cpu, or the reverse
                base = root / "cpu"
        else:
            continue
        folder = Path(path.strip() or "/")
        for ancestor in (folder, *folder.parents):
            files.append(base / str(ancestor).lstrip("/") / name)
    return files


def _quota_cpus(path: Path) -> float | None:
    """The CPUs a quota file allows (quota / period), or ``None`` when it sets none or is unreadable."""
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    if not fields or fields[0] in ("max", "-1"):
        return None
    try:
        quota = float(fields[0])
        period = float(fields[1]) if len(fields) > 1 else _v1_period(path)
    except ValueError:
        return None
    return quota / period if period > 0 else None


def _v1_period(quota_file: Path) -> float:
    try:
        return float(quota_file.with_name("cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return 100_000.0  # the kernel's default period


def cpu_quota(cpus: int, files: Sequence[Path] | None = None) -> str | None:
    """The CPU quota that limits this process below ``cpus`` cores (its file and value), or ``None``.
    ``files``: where to look (default: this process's cgroup and its ancestors)."""
    if files is None:
        try:
            files = _cgroup_quota_files(Path("/proc/self/cgroup").read_text(), CGROUPS)
        except OSError:
            files = []
    for path in files:
        allowed = _quota_cpus(path)
        if allowed is not None and allowed < cpus:
            return f"{path} allows {allowed:g} of {cpus} cores"
    return None


def resolve_window_ms(
    setting: float | None, cpus: int, driver_file: Path = CPUIDLE_DRIVER
) -> tuple[float, str | None]:
    """The window to poll for and, when it is 0, why: the setting when given, else ``AUTO_WINDOW_MS``
    on a ``haltpoll`` guest of up to ``AUTO_MAX_CPUS`` cores and 0 elsewhere."""
    if setting is not None:
        return setting, None if setting > 0 else "FACEFORGE_IDLE_POLL_MS is 0"
    try:
        driver = driver_file.read_text().strip()
    except OSError:
        driver = ""
    if driver != "haltpoll":
        return 0.0, f"not a haltpoll virtual machine (cpuidle driver: {driver or 'none'})"
    if cpus > AUTO_MAX_CPUS:
        return 0.0, f"{cpus} cores, more than the {AUTO_MAX_CPUS} it is on by default for"
    return AUTO_WINDOW_MS, None


class AwakeCores:
    """Tells the pollers when photos come and go (``working`` / ``resting``, from any thread)."""

    def __init__(
        self,
        window_ms: float | None,
        *,
        cpus: Iterable[int] | None = None,
        quota_files: Sequence[Path] | None = None,
        driver_file: Path = CPUIDLE_DRIVER,
        python: str = sys.executable,
        shared_page: Path | None = None,
    ) -> None:
        """``window_ms``: how long after a photo the cores poll, and the longest gap between photos
        that counts as a stream; 0: never; ``None``: ``resolve_window_ms``. ``cpus``: the cores to keep
        awake (default: those this process may run on). ``python``: the interpreter pollers run on.
        ``shared_page``: the ``PhotosPage`` this server's processes share (default: the one named by
        ``SHARED_PAGE_ENV``, else one of this process's own)."""
        self.off_because: str | None = None
        if not hasattr(os, "SCHED_IDLE") or not hasattr(os, "sched_getaffinity"):
            self.off_because = "this system cannot run a process at idle priority on a given core"
        self._cpus = [] if self.off_because else sorted(os.sched_getaffinity(0) if cpus is None else cpus)
        window_ms, unset_because = resolve_window_ms(window_ms, len(self._cpus), driver_file)
        self.window = window_ms / 1000.0
        self.off_because = self.off_because or unset_because
        if self.off_because is None:
            quota = cpu_quota(len(self._cpus), quota_files)
            if quota is not None:
                self.off_because = f"a CPU quota applies ({quota}): polling would spend it"
        self._python = python
        self._lock = threading.Lock()
        self._busy = 0
        self._last_end = -math.inf
        self._stream = False
        self._deadline = 0.0
        self._pollers: list[subprocess.Popen[bytes]] = []
        self._starting = False
        self._closed = False
        self._page: PhotosPage | None = None
        if self.off_because is None:
            self._page = self._open_page(shared_page or _env_page())
        if self.off_because:
            log.info("idle cores are not kept awake between photos: %s", self.off_because)

    def _open_page(self, shared: Path | None) -> PhotosPage | None:
        if shared is not None:
            try:
                return PhotosPage(shared)
            except (OSError, ValueError) as error:
                log.warning(
                    "the cores may be kept awake through other API processes' photos: cannot share %s "
                    "with them (%s)",
                    shared,
                    error,
                )
        try:
            return PhotosPage(None)
        except (OSError, ValueError) as error:  # no memory file, no /proc
            self.off_because = f"no page of memory to share with the pollers: {error}"
            return None

    @property
    def poller_pids(self) -> list[int]:
        with self._lock:
            return [poller.pid for poller in self._pollers if poller.poll() is None]

    def working(self) -> None:
        """A photo's analysis begins; every call is followed by one of ``resting``."""
        with self._lock:
            now = time.monotonic()
            if self._busy == 0:
                last_end = self._last_end
                if self._page is not None:
                    # Every poller of the server sees it on its next turn and sleeps, and a stream
                    # is any of the server's photos following another: with two API processes at 10
                    # photos/s each process alone sees gaps of 200 ms and more.
                    last_end = max(last_end, self._page.begin())
                self._stream = now - last_end <= self.window
            self._busy += 1
            # The cores poll between photos, never during one: a photo's threads hand work to each
            # other many times, and waking a thread on a core a spinner holds (which the scheduler must
            # interrupt) costs more than waking one on an idle core (which the guest's own haltpoll
            # polls briefly). Measured in-process, photos 100 ms apart, interleaved: p50 36.4-38.9 ms
            # spinning during the photo too, 28.4-31.1 spinning only between photos, 36.7-41.0 never
            # spinning; back to back 35.0, 29.0 and 29.0 (AMD EPYC Zen 4, KVM). With as many photos
            # as cores it also cost an API process 8 % of its throughput with 4 clients.
            self._deadline = 0.0  # the pollers read the page: nothing is written to them

    def resting(self) -> None:
        """A photo's analysis ends (whether or not it succeeded)."""
        with self._lock:
            self._busy -= 1
            if self._busy:
                return
            now = time.monotonic()
            self._last_end = now
            if self._page is not None:
                self._page.end(now)
                if self._page.anyone_busy():
                    # Another process's photo: its end tells the pollers (a sleeping poller is not
                    # woken on a busy core to be told to sleep).
                    return
            if self._stream:
                self._poll_until(now + self.window)

    def close(self) -> None:
        """End the pollers and start no more. They hold nothing: each is killed at once (one at idle
        priority on a busy machine could take seconds to notice its closed stdin)."""
        with self._lock:
            self._closed = True
            pollers, self._pollers = self._pollers, []
        for poller in pollers:
            if poller.stdin is not None:
                poller.stdin.close()
            poller.kill()
            poller.wait()
        with self._lock:
            page, self._page = self._page, None
        if page is not None:
            page.close()

    def _poll_until(self, deadline: float) -> None:
        """Under the lock: every poller spins until ``deadline``. The first asks a thread to start them,
        off the photo's path (a request never waits for a process to start)."""
        if self.off_because or self._closed:
            return
        self._deadline = deadline
        if not self._pollers and deadline <= time.monotonic():
            return  # nothing to stop
        if not self._pollers:
            if not self._starting:
                self._starting = True
                starter = threading.Thread(target=self._start_all, name="faceforge-awake-cores", daemon=True)
                try:
                    starter.start()
                except RuntimeError as error:  # no thread to be had: the photos matter more
                    self._off(f"could not start a thread for the pollers: {error}")
            return
        request = _DEADLINE.pack(deadline)
        for poller in self._pollers:
            if poller.stdin is None or poller.stdin.closed:
                continue
            try:
                os.write(poller.stdin.fileno(), request)
            except BlockingIOError:
                pass  # 8,000 requests unread: it is starved of CPU; later ones carry the deadline
            except OSError:
                poller.stdin.close()
                status = poller.poll()
                if status is None:  # its pipe closed a moment before it can be reaped
                    ended = ""
                elif status < 0:
                    ended = f" by signal {-status}"
                else:
                    ended = f" with status {status}"
                self._off(f"a poller ended{ended}")

    def _off(self, reason: str) -> None:
        if self.off_because is None:
            self.off_because = reason
            log.warning("idle cores are no longer kept awake between photos: %s", reason)

    def _start_all(self) -> None:
        started: list[subprocess.Popen[bytes]] = []
        try:
            for cpu in self._cpus:
                started.append(self._start(cpu))
        except Exception as error:  # whatever it is, the photos go on without pollers
            for poller in started:
                poller.kill()
                poller.wait()
            with self._lock:
                self._off(f"could not start a poller: {error}")
            return
        log.info(
            "a stream of photos: keeping %s awake %g ms after each photo (process %d)",
            "1 idle core" if len(started) == 1 else f"{len(started)} idle cores",
            1000 * self.window,
            os.getpid(),
        )
        with self._lock:
            if self._closed:
                pollers: list[subprocess.Popen[bytes]] = started
            else:
                self._pollers, pollers = started, []
                if self._deadline > time.monotonic():  # else they sleep already, as they should
                    self._poll_until(self._deadline)
        for poller in pollers:
            poller.kill()
            poller.wait()

    def _start(self, cpu: int) -> subprocess.Popen[bytes]:
        page = self._page
        if page is None:
            raise OSError("closed")
        # stdout and stderr go nowhere: a poller must not hold this process's output pipes open.
        # In a process group of its own, out of the terminal's foreground group: Ctrl-C stops the
        # server, whose exit closes the pollers' stdin, rather than the pollers first. Not in a session
        # of its own: with autogroup scheduling (sched_autogroup_enabled, the default of desktop and
        # many server kernels) each session is a group that the scheduler shares the CPU with fairly,
        # whatever the priority of the tasks inside, and the pollers then took half of each core from
        # the photos (identify p50 50 -> 110 ms at 10/s, measured).
        poller = subprocess.Popen(
            # -P: no module of the working directory
            [self._python, "-P", "-m", __name__, str(cpu), str(page.fd)],
            pass_fds=(page.fd,),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0,
        )
        assert poller.stdin is not None
        try:
            # At once (Popen returns once it has exec'd): its interpreter's start-up, some 50 ms of CPU,
            # must not take a core from a photo.
            os.sched_setscheduler(poller.pid, os.SCHED_IDLE, os.sched_param(0))
            os.sched_setaffinity(poller.pid, {cpu})
        except OSError:
            poller.kill()
            poller.wait()
            raise
        os.set_blocking(poller.stdin.fileno(), False)  # a request never waits on a poller
        return poller


def _poll(cpu: int, page_fd: int) -> None:
    """A poller: at idle priority on ``cpu``, spin until the last deadline read from stdin or until
    the page (``PhotosPage``, open as ``page_fd``) shows a photo in progress, then sleep until the next
    deadline; end when stdin closes (the API process ended or closed it)."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # raises rather than spin above idle
    os.sched_setaffinity(0, {cpu})
    page = mmap.mmap(page_fd, _PAGE_BYTES, prot=mmap.PROT_READ)
    requests = sys.stdin.fileno()
    os.set_blocking(requests, False)
    pending = b""
    deadline = 0.0
    while True:
        if time.monotonic() >= deadline or _anyone_busy(page):
            deadline = 0.0  # a photo began: the deadline was for the gap before it
            select.select([requests], [], [])
        try:
            data = os.read(requests, 4096)
        except BlockingIOError:
            continue
        if not data:
            return
        pending += data
        whole = len(pending) - len(pending) % _DEADLINE.size
        if whole:
            deadline = _DEADLINE.unpack_from(pending, whole - _DEADLINE.size)[0]
            pending = pending[whole:]


if __name__ == "__main__":
    _poll(int(sys.argv[1]), int(sys.argv[2]))
