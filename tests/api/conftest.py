from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _drop_model_files(tmp_path: Path) -> Iterator[None]:
    """Versions written by a test are not needed after it; a full run would leave GBs behind."""
    yield
    shutil.rmtree(tmp_path / "home" / "models", ignore_errors=True)
