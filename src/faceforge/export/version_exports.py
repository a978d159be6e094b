"""The on-device files of one model version, built from the cached backbone and the version's head.

Every file is verified before the version may be published: the fused graph must reproduce
backbone + head on a probe batch, otherwise the export raises and the version fails.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from faceforge.domain.errors import FaceforgeError
from faceforge.export.onnx_models import fused_model, head_model, opset_of
from faceforge.training.head import RecognitionHead
from faceforge.vision.crop import CROP_SIZE
from faceforge.vision.embedder import embedding_onnx_path

PARITY_TOLERANCE = 1e-4
UNKNOWN_LABEL = "unknown"


class ExportError(FaceforgeError):
    code = "export_failed"


@dataclass
class VersionExports:
    files: dict[str, bytes] = field(default_factory=dict)
    shared: dict[str, Path] = field(default_factory=dict)  # identical for every version: hard-linked
    manifest: dict[str, Any] = field(default_factory=dict)


class OnnxExporter:
    """Builds ``backbone.onnx`` (shared), ``head.onnx`` and ``model.onnx`` (fused) for a version."""

    def __init__(self, weights_dir: Path) -> None:
        self.weights_dir = weights_dir
        self._lock = threading.Lock()
        self._backbone: tuple[Path, onnx.ModelProto, ort.InferenceSession] | None = None

    def _load_backbone(self) -> tuple[Path, onnx.ModelProto, ort.InferenceSession]:
        with self._lock:
            if self._backbone is None:
                path = embedding_onnx_path(self.weights_dir)
                model = onnx.load(str(path))
                session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                self._backbone = (path, model, session)
            return self._backbone

    def export(self, head: RecognitionHead, into: VersionExports) -> None:
        path, backbone, backbone_session = self._load_backbone()
        head_graph = head_model(head, opset=opset_of(backbone), ir_version=backbone.ir_version)
        fused = fused_model(backbone, head_graph).SerializeToString()
        self._verify(fused, backbone_session, head)
        into.files["head.onnx"] = head_graph.SerializeToString()
        into.files["model.onnx"] = fused
        into.shared["backbone.onnx"] = path
        into.manifest["onnx"] = {
            "input": {
                "name": "face",
                "shape": ["batch", 3, CROP_SIZE, CROP_SIZE],
                "layout": "NCHW",
                "dtype": "float32",
                "range": [0, 255],
                "colour": "RGB",
            },
            "output": {
                "name": "probabilities",
                "shape": ["batch", len(head.labels) + 1],
                "labels": [*head.labels, UNKNOWN_LABEL],
            },
            "embedding": {"name": "embedding", "shape": ["batch", head.prototypes.shape[1]]},
        }
        variants = into.manifest.setdefault("variants", {})
        variants["onnx_fused"] = {"files": ["model.onnx"], "input": "face", "output": "probabilities"}
        variants["onnx_split"] = {
            "files": ["backbone.onnx", "head.onnx"],
            "pipeline": "backbone.onnx(face) -> embedding -> head.onnx(embedding) -> probabilities",
            "note": "backbone.onnx is the same file (same sha256) in every version: download it once",
        }

    @staticmethod
    def _verify(fused: bytes, backbone: ort.InferenceSession, head: RecognitionHead) -> None:
        probe = np.random.default_rng(0).uniform(0, 255, (2, 3, CROP_SIZE, CROP_SIZE)).astype(np.float32)
        expected = head.probabilities(backbone.run(None, {"face": probe})[0])
        session = ort.InferenceSession(fused, providers=["CPUExecutionProvider"])
        actual = session.run(None, {"face": probe})[0]
        difference = float(np.abs(actual - expected).max())
        if actual.shape != expected.shape or difference > PARITY_TOLERANCE:
            raise ExportError(
                f"model.onnx does not reproduce backbone + head (max difference {difference:.2e})"
            )
