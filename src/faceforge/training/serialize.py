"""The recognition head as files: ``head.safetensors`` (prototypes) and its numbers in the manifest."""

from __future__ import annotations

from typing import Any

import numpy as np
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from faceforge.training.head import Calibration, RecognitionHead

HEAD_FILE = "head.safetensors"


def head_bytes(head: RecognitionHead) -> bytes:
    metadata = {
        "threshold": repr(head.threshold),
        "scale": repr(head.scale),
        "classes": str(len(head.labels)),
    }
    data: bytes = save_tensors({"prototypes": np.ascontiguousarray(head.prototypes, np.float32)}, metadata)
    return data


def head_from_files(data: bytes, manifest: dict[str, Any]) -> RecognitionHead:
    tensors = load_tensors(data)
    calibration = manifest.get("calibration", {})
    return RecognitionHead(
        labels=list(manifest["labels"]),
        prototypes=np.asarray(tensors["prototypes"], np.float32),
        threshold=float(manifest["threshold"]),
        scale=float(manifest["scale"]),
        calibration=Calibration(**{k: calibration.get(k) for k in Calibration.__slots__}),
    )
