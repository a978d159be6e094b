"""A conversion prints nothing of the converters' own (absl, oneDNN, XNNPACK lines on descriptor 2),
while every other line written to stderr meanwhile still comes through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from faceforge.core.checksums import record_path

CONVERT = """
import os, sys
from pathlib import Path

from faceforge.core.checksums import record_path
from faceforge.building.export import coreml_models
from faceforge.building.export.device_backbones import DeviceBackboneCache
from faceforge.building.export.quiet import quiet_conversion_tools
from faceforge.core.native_logs import native_chatter_filtered

quiet_conversion_tools()  # as the worker does at start
refiner = DeviceBackboneCache(Path(sys.argv[1])).refiner()  # ONNX, TFLite (a parity run), Core ML
with native_chatter_filtered():
    os.write(2, b"a line of our own\\n")
    print("and a Python one", file=sys.stderr)
print("converters loaded here:", sorted({"coremltools", "tensorflow"} & set(sys.modules)))
# What each Core ML export does first, here in a process without PyTorch yet: coremltools imports it,
# and PyTorch's import reset the levels set above (its register_constant warning came back).
coreml_models.load_spec(refiner.coreml.read_bytes())
"""

CHATTER = ("absl::InitializeLog", "oneDNN custom operations", "XNNPACK delegate", "register_constant")


def test_converting_prints_no_converter_chatter(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", CONVERT, str(tmp_path)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "device").is_dir()
    assert [line for line in done.stderr.splitlines() if any(c in line for c in CHATTER)] == []
    assert "a line of our own\nand a Python one\n" in done.stderr
    # The conversion runs in a process of its own, which takes the converters' memory with it when
    # it ends (a server's embedded trainer kept 0.75 GB of it after a first start).
    assert "converters loaded here: []" in done.stdout, done.stdout
    # Every file of the refiner was recorded before it was written, refiner.onnx included (written
    # first, a process stopped between the two left a file that the next export took for damaged).
    (folder,) = (tmp_path / "device").glob("refiner-*")
    for name in ("refiner.onnx", "refiner.tflite", "refiner.mlmodel"):
        written = (folder / name).stat().st_mtime_ns
        assert record_path(folder / name).stat().st_mtime_ns <= written, name
