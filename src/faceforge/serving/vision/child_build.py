"""Files that only the building side's modules can make (they import ONNX or PyTorch), made in a child
process, so that a process on the serving side never imports them itself."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from faceforge.core.errors import WeightsUnavailableError
from faceforge.core.parent_watch import child_environment


def can_import(module: str) -> bool:
    """Whether a child process of this install could import ``module`` (``onnx``, ``torch``)."""
    return importlib.util.find_spec(module) is not None


def make_in_child(module: str, paths: list[Path], target: Path, action: str, timeout: float) -> None:
    """Run ``python -m module paths...`` to write ``target``. Raises ``WeightsUnavailableError``
    saying "could not ``action``" with the child's last line (or its timeout)."""
    command = [sys.executable, "-m", module, *map(str, paths)]
    try:
        # On timeout ``run`` kills the child and waits for it.
        # It stops by itself if this process is killed outright (``core.parent_watch``).
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=timeout, env=child_environment()
        )
    except subprocess.TimeoutExpired as error:
        raise WeightsUnavailableError(f"could not {action}: the process took over {timeout:.0f}s") from error
    if done.returncode != 0 or not target.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise WeightsUnavailableError(f"could not {action}: {last}")
