"""The pollers that keep idle cores awake through a stream of photos: real processes, read back from
/proc. Whether they make photos faster is measured in ``bench.api_load``, not asserted here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from faceforge.building.build import BuildOptions, build_model
from faceforge.core.config import Settings, WorkerSettings
from faceforge.serving.api.app import create_app
from faceforge.serving.awake_cores import (
    AwakeCores,
    _cgroup_quota_files,
    cpu_quota,
    create_shared_page,
    resolve_window_ms,
)
from faceforge.serving.services.bulk_import import ImportProgress
from faceforge.serving.services.vision_gate import VisionGate
from tests.api.fixtures import local_client, service_settings
from tests.conftest import LFW10, process_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pollers run on Linux only")

NO_QUOTA: tuple[Path, ...] = ()
# A poller at idle priority may wait long for a core while the test suite's other worker is busy.
PATIENCE_SECONDS = 30.0


def _ran_or_waited_ns(pid: int) -> int:
    """Nanoseconds the process has run on a CPU or waited in a run queue for one (schedstat's first two
    fields): while it spins that grows as fast as the clock, however busy the machine (a poller at idle
    priority may get almost no CPU beside another test), and while it sleeps it does not grow at all."""
    ran, waited = Path(f"/proc/{pid}/schedstat").read_text().split()[:2]
    return int(ran) + int(waited)


def _spinning(pids: list[int]) -> bool:
    """Every poller ran or waited to run for most of the next 0.3 s (a sleeping one: none of it)."""
    before = {pid: _ran_or_waited_ns(pid) for pid in pids}
    started = time.monotonic_ns()
    time.sleep(0.3)
    elapsed = time.monotonic_ns() - started
    return all(_ran_or_waited_ns(pid) - before[pid] > elapsed // 2 for pid in pids)


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _photo(awake: AwakeCores) -> None:
    awake.working()
    awake.resting()


def _assert_still(pids: list[int], meanwhile: Callable[[], None]) -> None:
    """No poller runs or waits to run for 0.3 s from ``meanwhile``'s call."""
    slept = {pid: _ran_or_waited_ns(pid) for pid in pids}
    meanwhile()
    time.sleep(0.3)
    assert {pid: _ran_or_waited_ns(pid) for pid in pids} == slept


def _pollers(awake: AwakeCores, cores: int | None = None) -> list[int]:
    count = len(os.sched_getaffinity(0)) if cores is None else cores
    _until(lambda: len(awake.poller_pids) == count, "a poller per core starts")
    return awake.poller_pids


# Windows far longer than any check below may take on a busy machine; closing kills the pollers.
LONG_MS = 60_000


@pytest.fixture
def awake() -> Iterator[AwakeCores]:
    with closing(AwakeCores(300, quota_files=NO_QUOTA)) as cores:
        yield cores


def test_a_stream_of_photos_spins_every_core_at_idle_priority() -> None:
    with closing(AwakeCores(LONG_MS, quota_files=NO_QUOTA)) as awake:
        _photo(awake)
        time.sleep(0.2)
        assert awake.poller_pids == [], "a lone photo does not poll"
        _photo(awake)  # within the window: a stream
        pids = _pollers(awake)
        cpus = sorted(os.sched_getaffinity(0))
        for cpu, pid in zip(cpus, pids, strict=True):
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE
            assert os.sched_getaffinity(pid) == {cpu}
        _until(lambda: _spinning(pids), "pollers spin")


def test_a_photo_on_the_one_core_stops_the_spinning_until_it_ends() -> None:
    cpu = min(os.sched_getaffinity(0))
    with closing(AwakeCores(LONG_MS, cpus=[cpu], quota_files=NO_QUOTA)) as awake:
        _photo(awake)
        awake.working()  # a stream, and a photo begins: no poller starts only to be stopped
        time.sleep(0.2)
        assert awake.poller_pids == [], "no poller starts only to be stopped"
        awake.resting()  # the core idles: it is kept awake
        pids = _pollers(awake, cores=1)
        _until(lambda: _spinning(pids), "the poller spins")
        awake.working()
        _until(lambda: process_state(pids[0]) == "S", "the poller stops at once")
        _assert_still(pids, lambda: None)
        awake.resting()
        _until(lambda: _spinning(pids), "the poller spins again")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="with one core a photo always stopped them")
def test_the_cores_poll_between_the_photos_of_a_stream_never_during_one() -> None:
    with closing(AwakeCores(LONG_MS, quota_files=NO_QUOTA)) as awake:
        _photo(awake)
        _photo(awake)
        pids = _pollers(awake)
        _until(lambda: _spinning(pids), "pollers spin between photos")
        awake.working()  # one photo, fewer than the cores on a machine of several: still not polled
        _until(lambda: all(process_state(pid) == "S" for pid in pids), "pollers stop as a photo begins")
        _assert_still(pids, lambda: None)
        awake.resting()
        _until(lambda: _spinning(pids), "pollers spin again once it ends")


@pytest.fixture
def shared_page() -> Iterator[Path]:
    """The page ``serve --workers N`` makes for its API processes."""
    made = create_shared_page()
    assert made is not None
    try:
        yield made[1]
    finally:
        os.close(made[0])


def test_no_api_process_polls_through_another_ones_photo(shared_page: Path) -> None:
    """Two API processes of one server (here two ``AwakeCores`` on its page): each counted only its own
    photos, so one's pollers spun through the other's, and a process's first photo after the other's
    was not seen as part of the stream."""
    with (
        closing(AwakeCores(LONG_MS, quota_files=NO_QUOTA, shared_page=shared_page)) as one,
        closing(AwakeCores(LONG_MS, quota_files=NO_QUOTA, shared_page=shared_page)) as other,
    ):
        _photo(one)
        _photo(one)
        ones = _pollers(one)
        _until(lambda: _spinning(ones), "the first process's pollers spin between its photos")
        other.working()
        _until(
            lambda: all(process_state(pid) == "S" for pid in ones), "they stop as the other's photo begins"
        )
        _assert_still(ones, lambda: None)
        other.resting()  # its first photo, but the server's stream goes on: its pollers take over
        others = _pollers(other)
        _until(lambda: _spinning(others), "the other process's pollers spin after its photo")
        _assert_still(ones, lambda: None)  # no second spinner on each core


def test_a_process_killed_during_a_photo_leaves_the_others_polling(shared_page: Path) -> None:
    """Its mark on the page says it has a photo in progress for ever: a dead process's is not counted,
    nor a zombie's (killed, not yet waited for by its parent: its id still answers ``kill(pid, 0)``)."""
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from faceforge.serving.awake_cores import AwakeCores
        awake = AwakeCores(300, quota_files=(), shared_page=Path({str(shared_page)!r}))
        assert awake.off_because is None, awake.off_because
        awake.working()
        print("busy", flush=True)
        time.sleep(600)
        """
    )
    with closing(AwakeCores(LONG_MS, quota_files=NO_QUOTA, shared_page=shared_page)) as awake:
        _photo(awake)
        _photo(awake)
        pids = _pollers(awake)
        _until(lambda: _spinning(pids), "pollers spin between photos")
        doomed = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert doomed.stdout is not None and doomed.stdout.readline() == "busy\n"
            _until(lambda: all(process_state(pid) == "S" for pid in pids), "they stop for its photo")
            _assert_still(pids, lambda: _photo(awake))  # it is alive and busy: nobody spins
            doomed.kill()
            _until(lambda: process_state(doomed.pid) == "Z", "the killed process awaits its parent")
            _photo(awake)
            _until(lambda: _spinning(pids), "pollers spin once the busy process is gone")
        finally:
            doomed.kill()
            doomed.wait()


@pytest.mark.parametrize("named", ["gone", "someone's file"])
def test_a_page_it_cannot_open_leaves_a_process_counting_its_own_photos(tmp_path: Path, named: str) -> None:
    """A stale setting may name a file that is gone, or anyone's: nothing is written into it."""
    path = tmp_path / named
    data = os.urandom(8192)
    if named != "gone":
        path.write_bytes(data)
    with closing(AwakeCores(LONG_MS, quota_files=NO_QUOTA, shared_page=path)) as awake:
        assert awake.off_because is None
        _photo(awake)
        _photo(awake)
        pids = _pollers(awake)
        _until(lambda: _spinning(pids), "pollers spin between photos")
    assert named == "gone" or path.read_bytes() == data


def test_a_python_without_memory_files_shares_an_unlinked_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.memfd_create`` is missing from Pythons built against glibc before 2.27 (some uv and conda
    builds, Amazon Linux 2): the service failed to start there."""
    monkeypatch.delattr(os, "memfd_create")
    made = create_shared_page()
    assert made is not None
    try:
        with (
            closing(AwakeCores(LONG_MS, quota_files=NO_QUOTA, shared_page=made[1])) as one,
            closing(AwakeCores(LONG_MS, quota_files=NO_QUOTA)) as alone,
        ):
            assert one.off_because is None and alone.off_because is None
            _photo(one)
            _photo(one)
            pids = _pollers(one)
            _until(lambda: _spinning(pids), "pollers spin between photos")
    finally:
        os.close(made[0])


def test_a_photo_request_stops_the_spinning_from_its_first_byte(tmp_path: Path, settings: Settings) -> None:
    """Not only once its photo is analysed: parsing it, and waking each thread that handles it, goes
    faster on cores no spinner holds (``serving.api.photo_requests``)."""
    database = f"sqlite:///{tmp_path / 'faceforge.db'}"
    quiet = service_settings(tmp_path, database, settings, worker=WorkerSettings(embedded=False))
    app = create_app(quiet)
    photo = (image := sorted((LFW10 / "Colin_Powell").glob("*.jpg"))[0]).read_bytes()
    boundary = "faceforge-test"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="{image.name}"\r\n\r\n'
    seen: list[str] = []

    with local_client(app) as client, closing(AwakeCores(LONG_MS, quota_files=NO_QUOTA)) as awake:
        app.state.services.awake = awake  # this machine's own setting may leave polling off
        _photo(awake)
        _photo(awake)  # a stream: the cores spin until the next photo
        pids = _pollers(awake)
        _until(lambda: _spinning(pids), "pollers spin between photos")

        def body() -> Iterator[bytes]:
            yield head.encode()
            # The request has arrived; its upload is still being read, nothing analysed yet.
            _until(
                lambda: all(process_state(pid) == "S" for pid in pids), "pollers stop as the request comes"
            )
            seen.append("stopped")
            yield photo + f"\r\n--{boundary}--\r\n".encode()

        answer = client.post(
            "/api/v1/identify",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert seen == ["stopped"], answer.text
        assert answer.json()["error"]["code"] == "model_not_ready", answer.text  # nobody enrolled yet
        _until(lambda: _spinning(pids), "pollers spin again after the answer")


def test_a_photo_after_a_long_gap_does_not_poll(awake: AwakeCores) -> None:
    _photo(awake)
    _photo(awake)
    pids = _pollers(awake)
    _until(lambda: all(process_state(pid) == "S" for pid in pids), "pollers sleep after the window")
    time.sleep(0.4)  # longer than the window: the next photo is not part of a stream
    _assert_still(pids, lambda: _photo(awake))


def test_close_ends_the_pollers(awake: AwakeCores) -> None:
    _photo(awake)
    _photo(awake)
    pids = _pollers(awake)
    awake.close()
    assert all(process_state(pid) == "" for pid in pids)
    _photo(awake)
    _photo(awake)
    time.sleep(0.2)
    assert awake.poller_pids == [], "a closed process starts no pollers"


def test_pollers_end_with_the_process_that_started_them() -> None:
    script = textwrap.dedent(
        """
        import time
        from faceforge.serving.awake_cores import AwakeCores
        awake = AwakeCores(300, quota_files=())
        for _ in range(2):
            awake.working()
            awake.resting()
        while len(awake.poller_pids) < 1:
            time.sleep(0.01)
        print(*awake.poller_pids, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    assert pids
    parent.kill()
    parent.wait()
    # Orphans are reaped by init once they end.
    _until(lambda: all(process_state(pid) in ("", "Z") for pid in pids), "pollers end with their parent")


def test_a_poller_that_cannot_start_turns_polling_off_and_photos_go_on(tmp_path: Path) -> None:
    with closing(AwakeCores(300, quota_files=NO_QUOTA, python=str(tmp_path / "no-python"))) as awake:
        gate = VisionGate(concurrency=1, queue=0, awake=awake)
        for _ in range(3):
            with gate.slot():
                pass
        _until(lambda: awake.off_because is not None, "polling turns off")
        assert awake.off_because is not None and "could not start a poller" in awake.off_because
        with gate.slot():
            pass
        assert awake.poller_pids == []


def test_the_vision_gate_reports_photos_also_when_their_analysis_fails(awake: AwakeCores) -> None:
    gate = VisionGate(concurrency=1, queue=0, awake=awake)
    with pytest.raises(RuntimeError), gate.slot():
        raise RuntimeError("an unreadable photo")
    with gate.slot():
        pass
    assert _pollers(awake), "two photos close together are a stream, whatever became of the first"


@pytest.mark.parametrize(
    ("name", "text", "limits"),
    [
        ("cpu.max", "100000 100000\n", True),  # one core of two
        ("cpu.max", "200000 100000\n", False),  # both cores: nothing to spend
        ("cpu.max", "max 100000\n", False),
        ("cpu.cfs_quota_us", "-1\n", False),
        ("cpu.cfs_quota_us", "50000\n", True),  # v1: the period is beside it, or 100000
    ],
)
def test_a_cpu_quota_below_the_cores_turns_polling_off(
    tmp_path: Path, name: str, text: str, limits: bool
) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert (cpu_quota(2, (path,)) is not None) is limits
    with closing(AwakeCores(300, cpus=[0, 1], quota_files=(path,))) as awake:
        assert (awake.off_because is not None) is limits


def test_the_quota_is_looked_for_in_the_process_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    own = "0::/system.slice/faceforge.service\n"
    files = _cgroup_quota_files(own, tmp_path)
    assert files == [
        tmp_path / "system.slice/faceforge.service/cpu.max",
        tmp_path / "system.slice/cpu.max",
        tmp_path / "cpu.max",
    ]
    (tmp_path / "system.slice").mkdir()
    (tmp_path / "system.slice/cpu.max").write_text("50000 100000\n")  # a quota on the parent slice
    assert cpu_quota(2, files) == f"{tmp_path / 'system.slice/cpu.max'} allows 0.5 of 2 cores"
    (tmp_path / "cpu,cpuacct").mkdir()
    v1 = _cgroup_quota_files("4:memory:/x\n3:cpu,cpuacct:/docker/abc\n", tmp_path)
    assert v1 == [
        tmp_path / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us",
        tmp_path / "cpu,cpuacct/docker/cpu.cfs_quota_us",
        tmp_path / "cpu,cpuacct/cpu.cfs_quota_us",
    ]


def test_unset_it_polls_only_on_a_small_haltpoll_guest(tmp_path: Path) -> None:
    driver = tmp_path / "current_driver"
    driver.write_text("haltpoll\n")
    assert resolve_window_ms(None, 2, driver) == (200, None)
    assert resolve_window_ms(None, 16, driver) == (0, "16 cores, more than the 8 it is on by default for")
    assert resolve_window_ms(0, 2, driver) == (0, "FACEFORGE_IDLE_POLL_MS is 0")
    assert resolve_window_ms(50, 16, driver) == (50, None)
    driver.write_text("intel_idle\n")
    assert resolve_window_ms(None, 2, driver) == (
        0,
        "not a haltpoll virtual machine (cpuidle driver: intel_idle)",
    )
    assert (
        resolve_window_ms(None, 2, tmp_path / "missing")[1]
        == "not a haltpoll virtual machine (cpuidle driver: none)"
    )
    with closing(AwakeCores(None, quota_files=NO_QUOTA, driver_file=driver)) as awake:
        assert awake.off_because is not None and awake.off_because.startswith(
            "not a haltpoll virtual machine"
        )
    with closing(AwakeCores(0, quota_files=NO_QUOTA, driver_file=driver)) as awake:
        assert awake.off_because == "FACEFORGE_IDLE_POLL_MS is 0"
        _photo(awake)
        _photo(awake)
        time.sleep(0.2)
        assert awake.poller_pids == []


def test_ctrl_c_at_the_terminal_leaves_the_pollers_to_their_process() -> None:
    with closing(AwakeCores(LONG_MS, quota_files=NO_QUOTA)) as awake:
        _ctrl_c_spares_the_pollers(awake)


def _ctrl_c_spares_the_pollers(awake: AwakeCores) -> None:
    _photo(awake)
    _photo(awake)
    pids = _pollers(awake)
    # Ctrl-C signals the terminal's foreground process group: this process's, not the pollers'.
    assert all(os.getpgid(pid) != os.getpgid(0) for pid in pids)
    # But the same session: with autogroup scheduling a session of their own would share each core
    # with the photos half and half, idle priority or not.
    assert all(os.getsid(pid) == os.getsid(0) for pid in pids)
    if Path("/proc/self/autogroup").exists():  # a kernel with autogroup scheduling
        ours = Path("/proc/self/autogroup").read_text()
        assert all(Path(f"/proc/{pid}/autogroup").read_text() == ours for pid in pids)
    os.kill(pids[0], signal.SIGTERM)  # someone else's doing: said as such, and polling stops
    _until(lambda: process_state(pids[0]) in ("", "Z"), "the poller ends")
    _photo(awake)
    assert awake.off_because == "a poller ended by signal 15"


class _Enough(Exception):
    pass


def test_a_build_keeps_no_cores_awake(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``faceforge build`` imports person after person on one thread: a stream of photos, through which
    # an API process on this kind of machine would poll. A batch keeps its cores busy itself.
    started: list[int] = []
    monkeypatch.setattr(AwakeCores, "_start", lambda self, cpu: started.append(cpu))
    people: list[str] = []

    def progress(_progress: ImportProgress, line: str | None) -> None:
        if line is not None:
            people.append(line)
        if len(people) == 3:
            time.sleep(0.3)  # the pollers' starting thread would have run by now
            raise _Enough

    outer = settings.model_copy(update={"idle_poll_ms": LONG_MS})
    with pytest.raises(_Enough):
        build_model(BuildOptions(LFW10, tmp_path / "model"), outer, progress)
    assert started == []
