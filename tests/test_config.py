"""Settings that pick behaviour fail loudly on unknown values."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.formats import ExportFormat


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


def test_worker_setting_descriptions_say_what_the_worker_does() -> None:
    fields = WorkerSettings.model_fields
    # A list without onnx is refused, not completed: the description must not promise otherwise.
    with pytest.raises(ValidationError, match="onnx is always exported"):
        WorkerSettings(formats="coreml,tflite")
    assert "must include onnx" in (fields["formats"].description or "")
    # A worker that has just taken the lease does not wait for the heartbeat to go stale.
    assert "at once" in (fields["stale_after_seconds"].description or "")
