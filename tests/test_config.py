"""Settings that pick behaviour fail loudly on unknown values, in one line naming the variable."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from faceforge.core.config import Settings, WorkerSettings, settings_error
from faceforge.core.formats import ExportFormat
from tests.api.fixtures import faceforge_command, faceforge_environment


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


def test_origins_are_kept_as_browsers_send_them() -> None:
    named = (
        "https://a.com:443, HTTP://LocalHost:3000/, https://bücher.de, http://[0:0::1]:8080, http://a.com:80"
    )
    assert Settings(cors_origins=named).cors_origin_set == {
        "https://a.com", "http://localhost:3000", "https://xn--bcher-kva.de", "http://[::1]:8080", "http://a.com",
    }  # fmt: skip


@pytest.mark.parametrize(
    "value",
    ["app.example.com", "https://app.example.com/path", "ftp://app.example.com", "https://user@app.example.com",
     "https://app.example.com:port", "https://app.example.com?x=1", "https://", "https://*.example.com",
     "https://app example.com", "http://app.example.com:0", "null", "http://127.1", "http://0x7f.0.0.1",
     "http://[fe80::1%25eth0]:3000"],
)  # fmt: skip
def test_the_setting_refuses_what_is_not_an_origin(value: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(cors_origins=value)
    message = settings_error(raised.value)
    assert message.startswith("FACEFORGE_CORS_ORIGINS: ") and "is not an origin" in message, message


def test_any_origin_needs_keys() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(cors_origins="*", admin_keys="", read_keys="")
    assert "needs API keys" in settings_error(raised.value)
    assert Settings(cors_origins="*", read_keys="reader").cors_origin_set == {"*"}


def test_a_wrong_setting_stops_the_cli_with_one_line(tmp_path: Path, settings: Settings) -> None:
    """It was a 53-line traceback from pydantic (exit 1) before."""
    cases = [  # variable, value, how the line starts, what it shows of the value
        ("FACEFORGE_CORS_ORIGINS", "https://app.example.com/app", "FACEFORGE_CORS_ORIGINS: ", "'https://app"),
        ("FACEFORGE_TARGET_UNKNOWN_REJECT", "2", "FACEFORGE_TARGET_UNKNOWN_REJECT: ", "(given '2')"),
        ("FACEFORGE_LIMITS__MAX_FILE_BYTES", "many", "FACEFORGE_LIMITS__MAX_FILE_BYTES: ", "'many'"),
        # A threshold above 1 was accepted, and nothing would ever have been detected.
        ("FACEFORGE_DETECTOR__THRESHOLDS", "[0.6, 0.7, 2]", "FACEFORGE_DETECTOR__THRESHOLDS: ", "2.0]"),
        # Not JSON: pydantic-settings' own error, a traceback that never named the variable.
        ("FACEFORGE_DETECTOR__THRESHOLDS", "high", "FACEFORGE_DETECTOR (or a FACEFORGE_DETECTOR__ ", "JSON"),
        # SQLAlchemy's errors at start-up, 136 lines; and the value may hold a password.
        ("FACEFORGE_DATABASE_URL", "nonsense://user:secret@db/x", "FACEFORGE_DATABASE_URL: ", "postgresql"),
    ]  # fmt: skip
    for variable, value, start, shown in cases:
        env = {**faceforge_environment(tmp_path / "home", settings), variable: value}
        done = subprocess.run(
            faceforge_command("serve", "--port", "1"), env=env, capture_output=True, text=True, timeout=120
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith("error: " + start) and shown in lines[0], lines[0]
        assert "secret" not in done.stderr


def test_groups_read_only_their_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """They read THRESHOLDS, FORMATS or MAX_FILE_BYTES of anyone's environment before."""
    monkeypatch.setenv("THRESHOLDS", "[0.1, 0.1, 0.1]")
    monkeypatch.setenv("MAX_FILE_BYTES", "not a number")
    assert Settings().detector.thresholds == (0.6, 0.7, 0.8)
    monkeypatch.setenv("FACEFORGE_DETECTOR__THRESHOLDS", "[0.5, 0.6, 0.7]")
    assert Settings().detector.thresholds == (0.5, 0.6, 0.7)
    monkeypatch.setenv("FACEFORGE_DETECTOR__THRESHOLDS", '[0.5, 0.6, "high"]')
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert settings_error(raised.value).startswith("FACEFORGE_DETECTOR__THRESHOLDS: "), raised.value


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("nan", "finite number"),
        ("inf", "finite number"),
        ("-5", "greater than or equal to 0"),
        ("abc", "number"),
    ],
)
def test_the_idle_poll_window_is_a_finite_number_of_milliseconds(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("FACEFORGE_IDLE_POLL_MS", value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    message = settings_error(raised.value)
    assert message.startswith("FACEFORGE_IDLE_POLL_MS: ") and says in message, message


@pytest.mark.parametrize("keys", ["tab\tsecret", "ok,line\nsecret", "bell\x07secret"])
def test_an_api_key_no_header_can_carry_is_refused(keys: str) -> None:
    """A key with a control character was accepted and then matched no request: every call a 401.
    Spaces and accents are kept (they are sent and read). The message never shows the key."""
    for setting in ("admin_keys", "read_keys"):
        with pytest.raises(ValidationError) as raised:
            Settings.model_validate({setting: keys})
        message = settings_error(raised.value)
        assert "control characters" in message and "secret" not in message, message
    kept = Settings(admin_keys="a-Key_1!,correct horse battery staple,clé").admin_key_set
    assert kept == {"a-Key_1!", "correct horse battery staple", "clé"}
