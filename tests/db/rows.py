"""Stored photo fields for the stores' own tests: what an accepted photo's row holds, minus the photo."""

from __future__ import annotations

from typing import Any

import numpy as np


def photo_fields(index: int) -> dict[str, Any]:
    """The columns of the ``index``-th test photo (its sha256 is ``index`` in hex)."""
    return {
        "sha256": f"{index:064x}",
        "content_type": "image/jpeg",
        "size_bytes": 1000,
        "width": 250,
        "height": 250,
        "box": {"x": 70, "y": 70, "width": 110, "height": 110},
        "landmarks": [],
        "score": 0.99,
        "embedder": "test",
        "embedding": np.zeros(4, dtype="<f4").tobytes(),
    }
