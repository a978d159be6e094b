"""Converted weights are files like any other: readable by whoever may read the rest of the home."""

from __future__ import annotations

import stat
from pathlib import Path

from faceforge.building.weights.onet_weights import load_onet


def test_converted_weights_have_the_mode_of_any_new_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.touch()  # 0o666 less the umask
    load_onet(tmp_path)
    (converted,) = tmp_path.glob("*.safetensors")
    assert stat.S_IMODE(converted.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
