from __future__ import annotations

from pathlib import Path

import pytest

from faceforge.core.config import Settings
from tests.api.conftest import _drop_model_files
from tests.api.fixtures import device_worker, service_settings

__all__ = ["_drop_model_files"]


@pytest.fixture(scope="session", autouse=True)
def _device_backbones_converted(device_backbones: Settings) -> None:
    """Every test here builds on-device files, which need the backbones (converted once)."""


@pytest.fixture
def api_settings(tmp_path: Path, database_url: str, settings: Settings) -> Settings:
    """Versions with every on-device format: these tests check them."""
    return service_settings(tmp_path, database_url, settings, worker=device_worker())
