from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceforge.config import Settings


@pytest.fixture(scope="session", autouse=True)
def _device_backbones_converted(device_backbones: Settings) -> None:
    """Every test here trains versions, which need the on-device backbones (converted once)."""


@pytest.fixture(autouse=True)
def _drop_model_files(tmp_path: Path) -> Iterator[None]:
    """A version with every format is ~340 MB on disk; a full run would leave many GB behind."""
    yield
    shutil.rmtree(tmp_path / "home" / "models", ignore_errors=True)
