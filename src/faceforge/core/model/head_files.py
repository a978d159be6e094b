"""The recognition head as files: ``head.safetensors`` (prototypes, margins); its numbers in the manifest."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from faceforge.core.model.head import Calibration, RecognitionHead

if TYPE_CHECKING:
    from faceforge.core.model.manifest import VersionManifest


def head_bytes(head: RecognitionHead) -> bytes:
    """The prototypes, with the head's numbers as one JSON metadata entry: safetensors writes a
    several-key metadata map in arbitrary order, and a version's files must be reproducible."""
    numbers = {"threshold": head.threshold, "scale": head.scale, "classes": len(head.labels)}
    metadata = {"faceforge_head": json.dumps(numbers, sort_keys=True)}
    tensors = {
        "prototypes": np.ascontiguousarray(head.prototypes, np.float32),
        "margins": np.ascontiguousarray(head.margins, np.float32),
    }
    data: bytes = save_tensors(tensors, metadata)
    return data


def head_from_files(data: bytes, manifest: VersionManifest) -> RecognitionHead:
    """The head from its prototypes file and the numbers its manifest states."""
    tensors = load_tensors(data)
    calibration: dict[str, Any] = manifest.calibration
    numbers: dict[str, Any] = {k: calibration.get(k) for k in Calibration.__slots__}
    return RecognitionHead(
        labels=list(manifest.labels),
        prototypes=np.asarray(tensors["prototypes"], np.float32),
        # Versions made before margins existed have none: every margin is 0.
        margins=np.asarray(tensors.get("margins", np.zeros(0)), np.float32),
        threshold=manifest.threshold,
        scale=manifest.scale,
        calibration=Calibration(**numbers),
    )
