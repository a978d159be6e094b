"""What ``faceforge watch`` lets one choose, importable without the agent's libraries (the CLI)."""

from __future__ import annotations

from enum import StrEnum


class ModelChoice(StrEnum):
    """Which exported files run (``--model``): a split variant of the version's manifest."""

    TFLITE_INT8 = "tflite-int8"
    TFLITE = "tflite"
    ONNX = "onnx"

    @property
    def variant(self) -> str:
        return {"tflite-int8": "tflite_int8_split", "tflite": "tflite_split", "onnx": "onnx_split"}[
            self.value
        ]

    @property
    def refiner(self) -> str:
        return "refiner.onnx" if self is ModelChoice.ONNX else "refiner.tflite"


class DetectorName(StrEnum):
    """``--detector``: MTCNN (the server's own) or BlazeFace (MediaPipe's short-range model)."""

    MTCNN = "mtcnn"
    BLAZEFACE = "blazeface"
