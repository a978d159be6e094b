from __future__ import annotations

import pytest

from faceforge.config import Settings


@pytest.fixture(scope="session", autouse=True)
def _device_backbones_converted(device_backbones: Settings) -> None:
    """Every test here trains versions, which need the on-device backbones (converted once)."""
