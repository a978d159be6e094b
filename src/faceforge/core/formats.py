"""The on-device formats a version can be exported to (a light module: settings import it)."""

from __future__ import annotations

from enum import StrEnum


class ExportFormat(StrEnum):
    ONNX = "onnx"
    COREML = "coreml"
    TFLITE = "tflite"


def parse_formats(value: str) -> tuple[ExportFormat, ...]:
    """``"onnx,coreml"`` -> formats in a fixed order; raises ``ValueError`` naming an unknown one."""
    names = {name.strip().lower() for name in value.split(",") if name.strip()}
    unknown = names - {f.value for f in ExportFormat}
    if unknown:
        raise ValueError(
            f"unknown export format(s) {sorted(unknown)}; choose from {[f.value for f in ExportFormat]}"
        )
    if ExportFormat.ONNX.value not in names:
        raise ValueError("onnx is always exported (the fused model and the server's backbone)")
    return tuple(f for f in ExportFormat if f.value in names)
