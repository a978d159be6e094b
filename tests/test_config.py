"""Settings that pick behaviour fail loudly on unknown values."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from faceforge.config import Settings, WorkerSettings
from faceforge.export.formats import ExportFormat


def test_export_formats_are_parsed_in_a_fixed_order() -> None:
    worker = WorkerSettings(formats=" TFLite, onnx ")
    assert worker.export_formats == (ExportFormat.ONNX, ExportFormat.TFLITE)
    assert WorkerSettings().export_formats == (ExportFormat.ONNX, ExportFormat.COREML, ExportFormat.TFLITE)


@pytest.mark.parametrize(
    ("formats", "message"),
    [("onnx,keras", "unknown export format(s) ['keras']"), ("coreml", "onnx is always exported")],
)
def test_bad_export_formats_are_rejected(formats: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        WorkerSettings(formats=formats)


def test_formats_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEFORGE_WORKER__FORMATS", "onnx,coreml")
    assert Settings().worker.export_formats == (ExportFormat.ONNX, ExportFormat.COREML)
