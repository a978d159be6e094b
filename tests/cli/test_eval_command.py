"""``faceforge eval`` through the CLI runner, on the dev photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from faceforge.cli.main import app
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from tests.conftest import FACES, LFW10

runner = CliRunner()


def _eval(settings: Settings, *args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["eval", "--home", str(settings.home), "--json", *args])
    assert result.exit_code == 0, result.output
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


LFW10_ARGS = ("--dataset", str(LFW10), "--enroll", "5", "--unknown", str(FACES / "unknown_singles"))


@pytest.fixture(scope="module")
def lfw10_figures(settings: Settings) -> dict[str, Any]:
    """The server's own figures on lfw10 (one eval, read by the goals and the app-detector tests)."""
    return _eval(settings, *LFW10_ARGS)


def test_lfw10_goals_on_dev_photos(lfw10_figures: dict[str, Any]) -> None:
    figures = lfw10_figures
    assert figures["identities"] == 10 and figures["probes"] == 50
    assert isinstance(figures["top1"], float) and figures["top1"] >= 0.995
    assert isinstance(figures["known_accept_rate"], float) and figures["known_accept_rate"] >= 0.95
    assert figures["unknown_reject_rate"] == 1.0
    assert figures["no_face"] == 0
    for key in ("threshold", "photos_per_second"):
        assert isinstance(figures[key], float) and figures[key] > 0


def test_negatives_yield_no_face_and_so_no_identity(settings: Settings) -> None:
    """The negatives (animals, objects, scenery) contain no face: none may reach recognition at all.
    One person enrolled is enough to have a gallery they could be named as."""
    one_person = ("--dataset", str(LFW10), "--people", "1", "--enroll", "5")
    figures = _eval(settings, *one_person, "--unknown", str(FACES / "negatives"))
    assert figures["identities"] == 1
    assert figures["unknown_photos"] == 15
    assert figures["unknown_faces"] == 0 and figures["unknown_no_face"] == 15
    assert figures["unknown_reject_rate"] is None  # nothing to reject, and said so rather than 1.0


def test_bad_dataset_exits_nonzero_with_one_line(settings: Settings, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["eval", "--home", str(settings.home), "--dataset", str(tmp_path / "missing")]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: dataset folder not found")
    photo = image_files(LFW10 / "Colin_Powell")[0]  # a photo given for the folder: said as such
    a_file = runner.invoke(app, ["eval", "--home", str(settings.home), "--dataset", str(photo)])
    assert (
        a_file.exit_code == 2 and a_file.stderr == f"error: dataset folder is a file, not a folder: {photo}\n"
    )


def test_an_unknown_folder_without_photos_is_refused(settings: Settings, tmp_path: Path) -> None:
    """An empty --unknown measured nothing and exited 0 ("unknown_reject_rate": null), where an empty
    --strangers, and build's empty --unknown, exit 2 (a tester's)."""
    (tmp_path / "empty").mkdir()
    args = ["--dataset", str(LFW10), "--enroll", "5", "--unknown", str(tmp_path / "empty")]
    result = runner.invoke(app, ["eval", "--home", str(settings.home), "--json", *args])
    assert result.exit_code == 2, result.output
    assert (
        result.stderr
        == f"error: {tmp_path / 'empty'} has no photos (--unknown: photos of people never enrolled)\n"
    )


@pytest.mark.parametrize("unknown", [LFW10, LFW10 / "Colin_Powell", LFW10.parent])
def test_unknowns_that_are_the_dataset_are_refused(settings: Settings, unknown: Path) -> None:
    """Unknowns taken from the enrolled people's own folders scored "0 % of strangers rejected", a
    figure that measured nothing; --strangers already refused the same."""
    args = ["--dataset", str(LFW10), "--enroll", "5", "--unknown", str(unknown)]
    result = runner.invoke(app, ["eval", "--home", str(settings.home), "--json", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --unknown must not be --dataset, inside it or hold it")
    assert result.stderr.strip().count("\n") == 0


def test_strangers_that_are_copies_of_measured_photos_are_refused(settings: Settings, tmp_path: Path) -> None:
    """A stranger given to calibration that is a renamed copy of an unknown or a probe would score
    what calibration has already seen; the folders differ, so only the bytes tell."""
    unknown = FACES / "unknown_singles"
    copied = sorted(unknown.iterdir())[0]
    strangers = tmp_path / "strangers"
    (strangers / "someone").mkdir(parents=True)
    (strangers / "someone" / "renamed.jpg").write_bytes(copied.read_bytes())
    args = ["--dataset", str(LFW10), "--enroll", "5", "--unknown", str(unknown)]
    args += ["--strangers", str(strangers)]
    result = runner.invoke(app, ["eval", "--home", str(settings.home), "--json", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: 1 photo(s) of --strangers are also enrolled, probes or unknowns")
    assert result.stderr.strip().count("\n") == 0
    probe = sorted((LFW10 / "Colin_Powell").iterdir())[-1]  # past the 5 enrolled: a probe
    (strangers / "someone" / "renamed.jpg").write_bytes(probe.read_bytes())
    again = runner.invoke(app, ["eval", "--home", str(settings.home), "--json", *args])
    assert again.exit_code == 2 and "also enrolled, probes or unknowns" in again.stderr


def test_app_detectors_crop_probes_as_an_app_would(settings: Settings, lfw10_figures: dict[str, Any]) -> None:
    args = LFW10_ARGS
    server = lfw10_figures
    same_boxes = _eval(settings, *args, "--app-detector", "mtcnn")
    assert same_boxes["app_detector"] == "mtcnn" and server["app_detector"] is None
    for key in ("top1", "known_accept_rate", "unknown_reject_rate", "threshold"):
        assert same_boxes[key] == server[key], key  # MTCNN's boxes by the contract are the server's crops
    for detector in ("dlib", "blazeface", "jitter"):
        figures = _eval(settings, *args, "--app-detector", detector)
        assert figures["app_detector"] == detector
        # Other detectors' boxes, refined first as the app does: the server's figures within 2 points.
        for key in ("top1", "known_accept_rate"):
            assert figures[key] >= server[key] - 0.02, (detector, key, figures[key], server[key])
    bad = runner.invoke(app, ["eval", "--home", str(settings.home), *args, "--app-detector", "vision"])
    assert bad.exit_code != 0


def test_files_that_are_no_photos_are_listed_not_counted_as_misses(
    settings: Settings, tmp_path: Path
) -> None:
    """A text file and an empty file named .jpg were probes without a face, so misses (a tester's two
    gave top-1 0.333), and unknowns without a face; import and build refuse them as no photos."""
    dataset, unknown = tmp_path / "people", tmp_path / "unknown"
    for person in ("Colin_Powell", "Tony_Blair"):
        (dataset / person).mkdir(parents=True)
        for photo in image_files(LFW10 / person)[:7]:
            (dataset / person / photo.name).symlink_to(photo)
    (dataset / "Colin_Powell" / "zz_notes.jpg").write_text("not a photo")
    unknown.mkdir()
    (unknown / "stranger.jpg").symlink_to(image_files(FACES / "unknown_singles")[0])
    (unknown / "empty.jpg").write_bytes(b"")
    # A real photo too small for faces is a photo without one, as before (a reviewer's).
    Image.new("RGB", (16, 16), "grey").save(unknown / "tiny.png")
    figures = _eval(settings, "--dataset", str(dataset), "--enroll", "5", "--unknown", str(unknown))
    assert figures["probes"] == 4 and figures["no_face"] == 0 and figures["top1"] == 1.0, figures
    assert figures["unknown_photos"] == 2 and figures["unknown_no_face"] == 1, figures
    listed = sorted(Path(entry["file"]).name for entry in figures["unreadable_files"])
    assert listed == ["empty.jpg", "zz_notes.jpg"], figures["unreadable_files"]
    assert all(entry["message"] for entry in figures["unreadable_files"])
