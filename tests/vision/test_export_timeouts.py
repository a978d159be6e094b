"""The embedding graph's export neither hangs on a stuck child process nor on a lock another process
never releases: both give up with ``WeightsUnavailableError``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.core.errors import WeightsUnavailableError
from faceforge.serving.vision.embedder import embedder_digest, embedding_onnx_path

HOLD_LOCK = """
import fcntl, sys, time
handle = open(sys.argv[1], "w")
fcntl.flock(handle, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""

EXPORT = """
import sys
from pathlib import Path
from faceforge.core.errors import WeightsUnavailableError
from faceforge.serving.vision.embedder import embedding_onnx_path
try:
    embedding_onnx_path(Path(sys.argv[1]), timeout=float(sys.argv[2]))
except WeightsUnavailableError as error:
    print(error.message)
    sys.exit(3)
"""


def _processes_naming(path: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(path).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_lock_held_by_a_hung_process_is_not_waited_for_ever(tmp_path: Path) -> None:
    lock = tmp_path / f".{EMBEDDER_NAME}-{embedder_digest()}.onnx.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        with pytest.raises(WeightsUnavailableError, match="still locked by another process"):
            embedding_onnx_path(tmp_path, timeout=1.0)
    finally:
        holder.kill()
        holder.wait()
    assert not list(tmp_path.glob("*.onnx"))


def test_a_stuck_export_child_is_killed(tmp_path: Path) -> None:
    # A process without PyTorch (as an API process) exports in a child; two seconds are far too few
    # for it (importing PyTorch alone takes longer), so it is stopped and the caller told.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", EXPORT, str(tmp_path), "2"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "could not export the embedding network: the process took over 2s" in done.stdout
    assert _processes_naming(tmp_path) == []  # the child is gone, not left converting
    assert not list(tmp_path.glob("*.onnx"))
