"""``faceforge build``: folder-per-person photos to every model file and a report, without a server."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceforge.building.build import build_settings, split_people
from faceforge.building.export.tflite_models import run_tflite
from faceforge.cli.main import app
from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.core.formats import ExportFormat
from faceforge.serving.services.bulk_import import scan_folders
from faceforge.serving.vision.pipeline import FacePipeline
from tests.conftest import FACES, LFW10

runner = CliRunner()
MODEL_FILES = {
    "model.tflite", "model_int8.tflite", "labels.txt", "model.mlmodel", "model.mlpackage.zip", "model.onnx",
    "backbone.tflite", "backbone_int8.tflite", "head.tflite", "backbone.mlmodel", "head.mlmodel",
    "pipeline.mlmodel", "backbone.onnx", "head.onnx", "head.safetensors", "manifest.json",
    "refiner.tflite", "refiner.mlmodel", "refiner.onnx", "detector_pnet.onnx", "detector_rnet.onnx",
    "backbone_int8.onnx",
    "contract_vectors.json",
}  # fmt: skip
REPORT_FILES = {"report.json", "report.html", "similarity.png", "accept_vs_reject.png", "people.png"}


def _build(settings: Settings, out: Path, dataset: Path = LFW10) -> dict[str, Any]:
    result = runner.invoke(
        app,
        ["build", "--dataset", str(dataset), "--out", str(out), "--unknown", str(FACES / "unknown_singles"),
         "--home", str(settings.home), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.name in MODEL_FILES
    }


def _dead_pid() -> int:
    """The number of a process that has ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def running() -> Iterator[subprocess.Popen[bytes]]:
    """A process that runs for the test's length: a build still at work, as far as its number says."""
    process = subprocess.Popen(["sleep", "600"])
    yield process
    process.kill()
    process.wait()


def test_build_writes_every_file_and_a_report(
    tmp_path: Path, settings: Settings, pipeline: FacePipeline, running: subprocess.Popen[bytes]
) -> None:
    # LFW10 as symlinks, and a photo beside the person folders: nobody's, so it changes nothing below
    # (the second build, of LFW10 itself, gives the same files) and the report says it was ignored.
    dataset = tmp_path / "people"
    for person in scan_folders(LFW10):
        (dataset / person.external_id).mkdir(parents=True)
        for photo in person.photos:
            (dataset / person.external_id / photo.name).symlink_to(photo)
    (dataset / "stray.jpg").symlink_to(image_files(FACES / "unknown_singles")[0])
    out = tmp_path / "out"
    # A build of a new OUT killed outright (SIGKILL, out of memory) left its hidden work folder beside
    # it, a gigabyte, which no later build removed; a running build's folder must stay.
    dead = _dead_pid()
    (tmp_path / f".out-build-{dead}-abcd1234" / "home").mkdir(parents=True)
    # A folder of this process's number is a dead build's too (in a container every build is
    # process 1); another OUT's, and a running build's, stay.
    (tmp_path / f".out-build-{os.getpid()}-abcd5678").mkdir()
    kept = {f".out-build-{running.pid}-abcd9012", f".out-build-{dead}7-build-1-abcd3456"}
    for name in kept:
        (tmp_path / name).mkdir()
    report = _build(settings, out, dataset)
    assert {p.name for p in tmp_path.iterdir() if "-build-" in p.name} == kept
    assert report["ignored"] == [str(dataset / "stray.jpg")]
    # What the import said of accepted photos (which face of a group photo was taken) is in the
    # report: the progress line counted "1 with a note", and it was said nowhere.
    assert report["notes"] and all(note["person"] and note["message"] for note in report["notes"])
    assert "Ignored photos (1)" in (out / "report.html").read_text()  # in the page too
    assert {p.name for p in out.iterdir()} == MODEL_FILES | REPORT_FILES
    assert set(report["files"]) == MODEL_FILES | REPORT_FILES
    assert report["people"] == 10 and report["held_out_photos"] == 20 and report["enrolled_photos"] == 80
    assert report["top1"] >= 0.95 and report["known_accept_rate"] >= 0.9
    assert report["unknown_reject_rate"] == 1.0 and report["tflite_agreement"] == 1.0
    for plot in ("similarity.png", "accept_vs_reject.png", "people.png"):
        with Image.open(out / plot) as png:
            assert png.format == "PNG" and png.width >= 600
    page = (out / "report.html").read_text()
    assert all(f'src="{plot}"' in page for plot in ("similarity.png", "accept_vs_reject.png", "people.png"))

    # The model alone, read back from OUT, names the held-out people (ai-edge-litert on their crops).
    labels = (out / "labels.txt").read_text().splitlines()
    _, held = split_people(scan_folders(LFW10), 0.2, 0)
    for person, path in held[::4]:
        image = pipeline.decode(path.read_bytes())
        inputs = pipeline.inputs(image, [pipeline.detect(image)[0].box])
        probabilities = run_tflite(
            (out / "model.tflite").read_bytes(),
            {"face": inputs.crops.astype(np.float32), "chip": inputs.chips.astype(np.float32)},
        )
        assert labels[int(probabilities.argmax())].startswith(person.name + " ("), (path.name, labels)

    # The same photos give the same files, byte for byte (the manifest's timestamp aside). This time
    # into ".", an empty folder that exists: the build used to fail at its very end (rmdir(".")) and
    # delete what it had built, as it did for an empty mount point.
    again = tmp_path / "again"
    (again / f".again-build-{dead}-abcd1234" / "home").mkdir(parents=True)  # a build killed outright
    (again / ".again-build-abcd_123").mkdir()  # left by a build from before folders named the process
    with contextlib.chdir(again):
        _build(settings, Path("."))
    assert not [p.name for p in again.iterdir() if p.name.startswith(".")]  # no work folder left
    first, second = _digests(out), _digests(again)
    first.pop("manifest.json"), second.pop("manifest.json")
    assert first == second


def test_build_refuses_a_folder_in_use_and_bad_datasets(tmp_path: Path, settings: Settings) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = runner.invoke(
        app, ["build", "--dataset", str(LFW10), "--out", str(taken), "--home", str(settings.home)]
    )
    assert (
        result.exit_code == 2
        and result.stderr.startswith("error: ")
        and "not an empty folder" in result.stderr
    )
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]  # nothing lost or half-written
    report = taken / "keep.txt"
    a_file = runner.invoke(
        app, ["build", "--dataset", str(LFW10), "--out", str(report), "--home", str(settings.home)]
    )
    assert a_file.exit_code == 2 and "is a file; OUT must be a new or an empty folder" in a_file.stderr
    # Into the photos' own tree, the next build read the report's PNG as a person's photo.
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "Colin_Powell").symlink_to(LFW10 / "Colin_Powell", target_is_directory=True)
    inside = runner.invoke(
        app,
        ["build", "--dataset", str(dataset), "--out", str(dataset / "model"), "--home", str(settings.home)],
    )
    assert inside.exit_code == 2 and inside.stderr == (
        "error: --out must be a folder apart from --dataset (neither inside the other)\n"
    )
    assert [p.name for p in dataset.iterdir()] == ["Colin_Powell"]
    strangers = tmp_path / "strangers"
    strangers.mkdir()
    into_unknown = runner.invoke(
        app,
        ["build", "--dataset", str(LFW10), "--unknown", str(strangers), "--out", str(strangers / "model"),
         "--home", str(settings.home)],
    )  # fmt: skip
    assert into_unknown.exit_code == 2 and "apart from --unknown" in into_unknown.stderr
    assert list(strangers.iterdir()) == []
    # A folder that cannot be made is one line, before any work (a PermissionError's traceback).
    unmakeable = runner.invoke(
        app, ["build", "--dataset", str(LFW10), "--out", "/proc/faceforge/out", "--home", str(settings.home)]
    )
    assert unmakeable.exit_code == 2 and unmakeable.stderr.startswith(
        "error: cannot write /proc/faceforge/out"
    )
    assert unmakeable.stderr.strip().count("\n") == 0
    # A file on the way: said as such, not "File exists".
    (tmp_path / "notes.txt").write_text("mine")
    under_a_file = runner.invoke(
        app,
        ["build", "--dataset", str(LFW10), "--out", str(tmp_path / "notes.txt" / "model"),
         "--home", str(settings.home)],
    )  # fmt: skip
    assert under_a_file.exit_code == 2 and under_a_file.stderr == (
        f"error: cannot write {tmp_path / 'notes.txt' / 'model'}: {tmp_path / 'notes.txt'} is a file, "
        "not a folder\n"
    )
    assert (tmp_path / "notes.txt").read_text() == "mine"
    missing = runner.invoke(
        app,
        [
            "build",
            "--dataset",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "o"),
            "--home",
            str(settings.home),
        ],
    )
    assert missing.exit_code == 2 and missing.stderr.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()
    # Unknowns from the people's own folders would be counted as strangers: refused before any work.
    inside = runner.invoke(
        app,
        ["build", "--dataset", str(LFW10), "--out", str(tmp_path / "u"),
         "--unknown", str(LFW10 / "Colin_Powell"), "--home", str(settings.home)],
    )  # fmt: skip
    assert inside.exit_code == 2 and inside.stderr.startswith("error: --unknown must not be --dataset")
    assert inside.stderr.strip().count("\n") == 0 and not (tmp_path / "u").exists()
    # Nothing accepted: the refusals say why, on the one line (it said only "nothing to build").
    (tmp_path / "texts" / "Bob").mkdir(parents=True)
    (tmp_path / "texts" / "Bob" / "a.jpg").write_bytes(b"not a photo")
    texts = runner.invoke(
        app,
        [
            "build",
            "--dataset",
            str(tmp_path / "texts"),
            "--out",
            str(tmp_path / "t"),
            "--home",
            str(settings.home),
        ],
    )
    said = texts.stderr.strip().splitlines()[-1]  # after the progress lines
    assert texts.exit_code == 2 and said.startswith("error: no photo was accepted"), texts.output
    assert "Bob/a.jpg: the file is not a recognised image" in said and not (tmp_path / "t").exists()
    # A mistyped or empty --unknown: it built, and the report's strangers line said "-" (a new user's).
    (tmp_path / "empty").mkdir()
    for unknown, said in (
        (tmp_path / "nowhere", "unknown folder not found"),
        (tmp_path / "empty", "has no photos"),
    ):
        wrong = runner.invoke(
            app,
            ["build", "--dataset", str(LFW10), "--out", str(tmp_path / "w"),
             "--unknown", str(unknown), "--home", str(settings.home)],
        )  # fmt: skip
        assert wrong.exit_code == 2 and said in wrong.stderr, wrong.output
        assert wrong.stderr.strip().count("\n") == 0 and not (tmp_path / "w").exists()


def test_a_build_makes_every_format_whatever_the_servers_setting(tmp_path: Path, settings: Settings) -> None:
    """A home whose server publishes ONNX only (``FACEFORGE_WORKER__FORMATS=onnx``) still builds a
    version's every file: the build crashed at its end looking for the ``model.tflite`` its report
    runs, and deleted what it had built."""
    server = settings.model_copy(update={"worker": WorkerSettings(formats="onnx")})
    assert server.worker.export_formats == (ExportFormat.ONNX,)
    assert build_settings(server, tmp_path / "home").worker.export_formats == tuple(ExportFormat)


def test_a_held_out_file_without_a_face_is_listed_not_counted_a_miss(
    tmp_path: Path, settings: Settings
) -> None:
    """A held-out text file (or a photo without a face) was counted as a recognition miss and listed
    nowhere: two people recognised perfectly reported a top-1 of 0.67."""
    dataset = tmp_path / "people"
    for person in ("Colin_Powell", "Tony_Blair"):
        (dataset / person).mkdir(parents=True)
        for photo in image_files(LFW10 / person)[:3]:
            (dataset / person / photo.name).symlink_to(photo)
    (dataset / "Colin_Powell" / "zz-notes.jpg").write_text("not a photo")
    seed = next(
        seed
        for seed in range(50)
        if "zz-notes.jpg" in {path.name for _, path in split_people(scan_folders(dataset), 0.5, seed)[1]}
    )
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["build", "--dataset", str(dataset), "--out", str(out), "--holdout", "0.5", "--seed", str(seed),
         "--home", str(settings.home)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [(r["person"], r["file"], r["reasons"]) for r in report["held_out_unusable"]] == [
        ("Colin_Powell", "zz-notes.jpg", ["not_an_image"])
    ]
    assert report["top1"] == 1.0, report  # over the held-out photos with a face
    assert "held out Colin_Powell/zz-notes.jpg" in result.stdout and ": None" not in result.stdout
    assert "Held-out photos without a face (1)" in (out / "report.html").read_text()


def test_a_build_stopped_by_sigterm_leaves_nothing(tmp_path: Path, settings: Settings) -> None:
    """Ctrl-C removed the work folder; SIGTERM (a service manager's stop, `kill`) ended the process
    with it in place: a gigabyte of photos and model files hidden beside OUT (a tester's)."""
    dataset = tmp_path / "people"
    for person in ("Colin_Powell", "Tony_Blair"):
        (dataset / person).mkdir(parents=True)
        for photo in image_files(LFW10 / person)[:3]:
            (dataset / person / photo.name).symlink_to(photo)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "faceforge.cli.main", "build", "--dataset", str(dataset)]
    environment = {**os.environ, "FACEFORGE_WEIGHTS_CACHE": str(settings.weights_dir)}
    process = subprocess.Popen(
        [*command, "--out", str(out), "--home", str(tmp_path / "home")],
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:  # not a terminal: a line per person; the work folder exists by now
        if "Colin_Powell" in line:
            assert [p.name for p in tmp_path.iterdir() if "-build-" in p.name], "no work folder yet"
            process.send_signal(signal.SIGTERM)
            break
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 143, rest
    assert rest.strip().splitlines()[-1] == "error: terminated; nothing was written", rest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "people"]  # no OUT, no work folder
