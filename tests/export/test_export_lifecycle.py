"""Exports in the version lifecycle: a failed export fails the version, and `faceforge export` re-exports."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from faceforge.building import exports as exports_module
from faceforge.building.export.device_backbones import PROGRAM_FILES, DeviceBackboneCache
from faceforge.building.exports import _refuse_another_exports_files as refuse
from faceforge.cli import main as cli_module
from faceforge.cli.main import app as cli
from faceforge.core.atomic import write_atomically
from faceforge.core.checksums import record_path
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.errors import ExportError
from faceforge.serving.api.app import create_app
from tests.api.fixtures import device_worker, local_client, photo_fields, service_settings, wait_until_trained
from tests.conftest import LFW10


def _register(client: TestClient, folder: str) -> None:
    response = client.post(
        "/api/v1/people", data={"name": folder}, files=photo_fields(image_files(LFW10 / folder)[:4])
    )
    assert response.status_code == 201, response.text


def test_damaged_backbone_fails_the_version_and_keeps_the_previous_one(
    tmp_path: Path, database_url: str, settings: Settings
) -> None:
    # A weights cache of our own (hard links to the session's), so damaging it harms no other test.
    weights = tmp_path / "weights"
    shutil.copytree(settings.weights_dir, weights, copy_function=os.link)
    app_settings = service_settings(
        tmp_path, database_url, settings, weights_cache=weights, worker=device_worker(formats="onnx,tflite")
    )
    with local_client(create_app(app_settings)) as client:
        _register(client, "Colin_Powell")
        wait_until_trained(client)
        assert client.get("/api/v1/models/current").json()["version"] == 1

        # The int8 TFLite backbone: checked and recovered as every cached backbone is, and made again
        # from the float one in a second (the float one's conversion takes half a minute more).
        damaged = DeviceBackboneCache(weights).paths().tflite_int8
        damaged.unlink()  # break the link first: the session's own copy stays intact
        damaged.write_bytes(b"TFL3 but not really a model")
        _register(client, "Tony_Blair")
        wait_until_trained(client)
        failed = client.get("/api/v1/models/2").json()
        assert failed["status"] == "failed"
        assert "backbone_int8.tflite was damaged" in failed["status_message"]
        assert client.get("/api/v1/models/current").json()["version"] == 1
        assert not (app_settings.models_dir / "2").exists()
        assert not damaged.exists()  # removed, so the next training converts it again

        _register(client, "Hugo_Chavez")
        wait_until_trained(client)
        current = client.get("/api/v1/models/current").json()
        assert current["version"] == 3 and current["status"] == "ready"
        assert (
            current["files"]["backbone_int8.tflite"]["sha256"]
            == hashlib.sha256(damaged.read_bytes()).hexdigest()
        )


def test_every_file_of_the_ml_program_package_is_checked_and_a_damaged_package_made_again(
    tmp_path: Path, settings: Settings
) -> None:
    """Only the package's weights were checksummed (its spec and manifest go into every version's
    model.mlpackage.zip too), and damaged weights removed only their Data/com.apple.CoreML folder: the
    package still counted as converted, and every later export failed on the missing file."""
    session = DeviceBackboneCache(settings.weights_dir).coreml().coreml_program  # converted once
    weights = tmp_path / "weights"
    shutil.copytree(settings.weights_dir, weights, copy_function=os.link)
    package = DeviceBackboneCache(weights).paths().coreml_program

    # A package converted when only its weights were recorded is still trusted, and recorded now.
    for name in PROGRAM_FILES[:-1]:
        record_path(package / name).unlink()
    DeviceBackboneCache(weights).coreml()
    assert all(record_path(package / name).is_file() for name in PROGRAM_FILES)

    for name in PROGRAM_FILES:
        damaged = package / name
        content = damaged.read_bytes()
        damaged.unlink()  # break the link first: the session's own copy stays intact
        damaged.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))  # one bit
        with pytest.raises(ExportError, match=r"backbone\.mlpackage was damaged"):
            DeviceBackboneCache(weights).coreml()
        assert not package.exists(), name  # so the next export converts it again
        shutil.copytree(session, package, copy_function=os.link)  # as converting would, sooner
        DeviceBackboneCache(weights).coreml()


def test_cli_export_writes_the_versions_own_files(
    tmp_path: Path, database_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_settings = service_settings(tmp_path, database_url, settings, worker=device_worker())
    with local_client(create_app(app_settings)) as client:
        _register(client, "Gerhard_Schroeder")
        _register(client, "Ariel_Sharon")
        wait_until_trained(client)
        current = client.get("/api/v1/models/current").json()
        version, listing = str(current["version"]), current["files"]

    env = {
        "FACEFORGE_DATABASE_URL": database_url,
        "FACEFORGE_WEIGHTS_CACHE": str(settings.weights_dir),
    }
    runner = CliRunner()
    home = ["--home", str(app_settings.home)]
    for export_format, expected in (
        ("tflite", {"model.tflite", "model_int8.tflite", "head.tflite", "backbone.tflite", "labels.txt"}),
        ("coreml", {"model.mlmodel", "model.mlpackage.zip", "head.mlmodel", "backbone.mlmodel"}),
        ("onnx", {"model.onnx", "head.onnx", "backbone.onnx", "labels.txt"}),
    ):
        out = tmp_path / export_format
        command = ["export", "--version", version, "--format", export_format, "--out", str(out), *home]
        result = runner.invoke(cli, command, env=env)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert expected <= set(summary["files"]) == {p.name for p in out.iterdir()}
        for name, written in summary["files"].items():
            assert hashlib.sha256((out / name).read_bytes()).hexdigest() == written["sha256"]
            assert written["sha256"] == listing[name]["sha256"], name  # the same bytes as the version's
            # ...but the user's own copies: editing one must not change the published version's file
            # or the weights cache it was linked from (a hard link shares both).
            assert (out / name).stat().st_nlink == 1, name

    # A model file that cannot be written (a full disk, here a folder in its place) fails the export
    # before the labels: no labels.txt describes models that are not there.
    blocked = tmp_path / "blocked"
    (blocked / "model.onnx").mkdir(parents=True)
    (blocked / "model.onnx" / "keep").write_text("mine")
    failed = runner.invoke(
        cli, ["export", "--version", version, "--format", "onnx", "--out", str(blocked), *home], env=env
    )
    assert failed.exit_code != 0 and "cannot write to" in failed.output
    assert not (blocked / "labels.txt").exists(), sorted(p.name for p in blocked.iterdir())

    # Into an earlier export's folder, a failure part way left the new models beside the earlier
    # labels.txt, which describes another version's outputs: it goes before the first model.
    earlier = tmp_path / "onnx"
    (earlier / "model.onnx").unlink()
    (earlier / "model.onnx").mkdir()
    failed = runner.invoke(
        cli, ["export", "--version", version, "--format", "onnx", "--out", str(earlier), *home], env=env
    )
    assert failed.exit_code != 0 and "cannot write to" in failed.output
    assert not (earlier / "labels.txt").exists(), sorted(p.name for p in earlier.iterdir())

    missing = runner.invoke(
        cli, ["export", "--version", "9", "--format", "onnx", "--out", str(tmp_path / "x"), *home], env=env
    )
    assert missing.exit_code != 0
    assert "version 9" in missing.output and len(missing.output.strip().splitlines()) == 1
    bad_format = runner.invoke(
        cli, ["export", "--version", version, "--format", "keras", "--out", str(tmp_path), *home], env=env
    )
    assert bad_format.exit_code != 0
    assert not (tmp_path / "x").exists()

    # --out "" would be the current directory: hundreds of MB wherever the command was typed.
    here = tmp_path / "cwd"
    here.mkdir()
    with contextlib.chdir(here):
        command = ["export", "--version", version, "--format", "onnx", "--out", "", *home]
        empty = runner.invoke(cli, command, env=env)
    assert not any(here.iterdir())
    assert empty.exit_code == 2 and "--out" in empty.output, empty.output
    assert len(empty.output.strip().splitlines()) == 1
    # Into a folder of another export: its files would stay beside this one's labels.txt, which no
    # longer describes them. A folder of the same format's files (a re-export) or of other files (an
    # app's resources) is written into.
    mixed = tmp_path / "tflite"  # holds the TFLite export above
    (mixed / "notes.txt").write_text("the app's own file")
    (mixed / "contract_vectors.json").write_text("{}")  # a version's file, but no format's model
    command = ["export", "--version", version, "--format", "onnx", "--out", str(mixed), *home]
    refused = runner.invoke(cli, command, env=env)
    assert refused.exit_code != 0 and "model.tflite" in refused.output, refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert not (mixed / "model.onnx").exists()
    again = runner.invoke(
        cli, ["export", "--version", version, "--format", "tflite", "--out", str(mixed), *home], env=env
    )
    assert again.exit_code == 0, again.output
    assert (mixed / "notes.txt").read_text() == "the app's own file"

    # Ctrl-C: the message said the folder "may hold part of the export" whenever it came. Stopped
    # while the files are built, an earlier export is whole; once writing began, it is not. The
    # interrupt comes right after the real step it follows.
    onnx = ["export", "--version", version, "--format", "onnx", *home]
    whole = tmp_path / "whole"
    assert runner.invoke(cli, [*onnx, "--out", str(whole)], env=env).exit_code == 0
    before = {p.name: p.read_bytes() for p in whole.iterdir()}

    def interrupted_after(step: Callable[..., Any]) -> Callable[..., Any]:
        def then_interrupt(*args: Any, **kwargs: Any) -> Any:
            step(*args, **kwargs)
            raise KeyboardInterrupt

        return then_interrupt

    # Earlier, while the command starts (its imports take seconds), Typer exited 130 without a word.
    with monkeypatch.context() as patch:
        patch.setattr(cli_module, "_worker_install", interrupted_after(cli_module._worker_install))
        stopped = runner.invoke(cli, [*onnx, "--out", str(whole)], env=env)
    assert (stopped.exit_code, stopped.output.strip()) == (130, "error: interrupted"), stopped.output
    with monkeypatch.context() as patch:
        patch.setattr(exports_module, "_refuse_another_exports_files", interrupted_after(refuse))
        stopped = runner.invoke(cli, [*onnx, "--out", str(whole)], env=env)
    assert stopped.exit_code == 130, stopped.output
    assert stopped.output.strip() == f"error: interrupted; nothing was written to {whole}"
    assert {p.name: p.read_bytes() for p in whole.iterdir()} == before
    with monkeypatch.context() as patch:
        patch.setattr(exports_module, "write_atomically", interrupted_after(write_atomically))
        stopped = runner.invoke(cli, [*onnx, "--out", str(whole)], env=env)
    assert stopped.exit_code == 130, stopped.output
    said = f"error: interrupted; {whole} holds part of the export, without labels.txt: export again"
    assert stopped.output.strip() == said
    assert not (whole / "labels.txt").exists()
