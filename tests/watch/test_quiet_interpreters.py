"""LiteRT writes "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to stderr at each
interpreter's first run, under the agent's own log lines (a new-user tester's report): the agent's
interpreters make that run when they load, with the line left out."""

from __future__ import annotations

import subprocess
import sys


def test_the_blazeface_detector_loads_and_runs_without_litert_chatter() -> None:
    script = (
        "import numpy as np\n"
        "from faceforge.edge.blazeface import BlazeFaceDetector\n"
        "detector = BlazeFaceDetector()\n"
        "detector.detect(np.zeros((120, 160, 3), np.uint8))\n"
        "print('ran', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout == "ran\n"
    assert "XNNPACK" not in done.stderr, done.stderr
