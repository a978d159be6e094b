"""The pollers that keep idle cores awake through a stream of photos: real processes, read back from
/proc. Whether they make photos faster is measured in ``bench.api_load``, not asserted here."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from faceforge.serving.awake_cores import AwakeCores, cpu_quota
from faceforge.serving.services.vision_gate import VisionGate

NO_QUOTA = (Path("/nonexistent/cpu.max"),)
# A poller at idle priority may wait long for a core while the test suite's other worker is busy.
PATIENCE_SECONDS = 30.0


def _state(pid: int) -> str:
    """The process's scheduler state letter (R running, S sleeping, Z zombie), or "" once gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _photo(awake: AwakeCores) -> None:
    awake.working()
    awake.resting()


@pytest.fixture
def awake() -> Iterator[AwakeCores]:
    cores = AwakeCores(300, quota_files=NO_QUOTA)
    yield cores
    cores.close()


def test_a_stream_of_photos_polls_every_core_at_idle_priority_until_the_window_ends() -> None:
    # A long window: the checks below must not outlast it on a busy machine.
    with closing(AwakeCores(3000, quota_files=NO_QUOTA)) as awake:
        _a_stream_polls(awake)


def _a_stream_polls(awake: AwakeCores) -> None:
    _photo(awake)
    assert awake.poller_pids == [], "a lone photo does not poll"
    _photo(awake)  # within the window: a stream
    pids = awake.poller_pids
    assert len(pids) == len(os.sched_getaffinity(0))
    cpus = sorted(os.sched_getaffinity(0))

    def settled() -> bool:
        return all(
            os.sched_getscheduler(pid) == os.SCHED_IDLE and os.sched_getaffinity(pid) == {cpu}
            for cpu, pid in zip(cpus, pids, strict=True)
        )

    _until(settled, "each poller takes idle priority on its own core")
    # Spinning, then asleep once the window has passed (S: waiting for the next request).
    _photo(awake)
    assert all(_state(pid) == "R" for pid in pids)
    _until(lambda: all(_state(pid) == "S" for pid in pids), "pollers sleep after the window")
    time.sleep(0.2)
    assert all(_state(pid) == "S" for pid in pids)


def test_a_photo_after_a_long_gap_does_not_poll(awake: AwakeCores) -> None:
    _photo(awake)
    _photo(awake)
    pids = awake.poller_pids
    _until(lambda: all(_state(pid) == "S" for pid in pids), "pollers sleep after the window")
    time.sleep(0.4)  # longer than the window: the next photo is not part of a stream
    _photo(awake)
    time.sleep(0.05)
    assert all(_state(pid) == "S" for pid in pids)


def test_close_ends_the_pollers(awake: AwakeCores) -> None:
    _photo(awake)
    _photo(awake)
    pids = awake.poller_pids
    awake.close()
    assert all(_state(pid) in ("", "Z") for pid in pids)
    _photo(awake)
    _photo(awake)
    assert awake.poller_pids == [], "a closed process starts no pollers"


def test_pollers_end_with_the_process_that_started_them(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from faceforge.serving.awake_cores import AwakeCores
        awake = AwakeCores(300, quota_files=(Path({str(NO_QUOTA[0])!r}),))
        for _ in range(2):
            awake.working()
            awake.resting()
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
    _until(lambda: all(_state(pid) in ("", "Z") for pid in pids), "pollers end with their parent")


@pytest.mark.parametrize(
    ("name", "text", "quota"),
    [
        ("cpu.max", "200000 100000\n", True),
        ("cpu.max", "max 100000\n", False),
        ("cpu.cfs_quota_us", "-1\n", False),
    ],
)
def test_a_cpu_quota_turns_polling_off(tmp_path: Path, name: str, text: str, quota: bool) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert (cpu_quota((path,)) is not None) is quota
    awake = AwakeCores(300, quota_files=(path,))
    try:
        _photo(awake)
        _photo(awake)
        assert bool(awake.poller_pids) is not quota
        assert (awake.off_because is not None) is quota
    finally:
        awake.close()


def test_zero_turns_polling_off() -> None:
    awake = AwakeCores(0, quota_files=NO_QUOTA)
    _photo(awake)
    _photo(awake)
    assert awake.poller_pids == []
    assert awake.off_because == "FACEFORGE_IDLE_POLL_MS is 0"


def test_the_vision_gate_reports_photos_also_when_their_analysis_fails(awake: AwakeCores) -> None:
    gate = VisionGate(concurrency=1, queue=0, awake=awake)
    with pytest.raises(RuntimeError), gate.slot():
        raise RuntimeError("an unreadable photo")
    with gate.slot():
        pass
    assert awake.poller_pids, "two photos close together are a stream, whatever became of the first"
