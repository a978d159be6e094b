"""``faceforge import --strangers``: a folder per stranger or a loose photo each, into a home or a
server, resumable (by folder name / photo sha256), one version for people and strangers together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from faceforge.cli.main import app
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.serving.api.app import create_app
from tests.api.fixtures import local_client, serve_process
from tests.conftest import FACES, LFW10

runner = CliRunner()
PEOPLE = ("Colin_Powell", "Tony_Blair")
UNKNOWN = image_files(FACES / "lfw_dev" / "unknown")


def _link(folder: Path, photos: list[Path]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        (folder / photo.name).symlink_to(photo)


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """People (4 photos each) and strangers: one folder of 3 photos, 3 loose faces and a loose cat."""
    people, strangers = tmp_path / "people", tmp_path / "strangers"
    for person in PEOPLE:
        _link(people / person, image_files(LFW10 / person)[:4])
    _link(strangers / "Hugo_Chavez", image_files(LFW10 / "Hugo_Chavez")[:3])
    _link(strangers, [*UNKNOWN[:3], image_files(FACES / "negatives")[0]])
    return people, strangers


def _import(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["import", *args, "--json"])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def test_strangers_into_a_home_then_again(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEFORGE_WEIGHTS_CACHE", str(settings.weights_dir))
    monkeypatch.setenv("FACEFORGE_WORKER__FORMATS", "onnx")
    home = str(tmp_path / "home")
    people, strangers = _folders(tmp_path)

    first = _import(str(people), "--strangers", str(strangers), "--home", home)
    assert (first["people_created"], first["strangers_created"]) == (len(PEOPLE), 4)
    assert first["photos_accepted"] == len(PEOPLE) * 4 + 3 + 3
    assert [r["reasons"] for r in first["refused"]] == [["no_face"]]  # the cat, as a stranger
    assert "stranger" in first["refused"][0] and "person" not in first["refused"][0]
    # A loose photo is a stranger of its own, with no folder: null, not its sha256 (a tester's).
    cat = image_files(FACES / "negatives")[0].name
    assert (first["refused"][0]["stranger"], first["refused"][0]["file"]) == (None, cat), first["refused"]
    assert first["version"] == 1

    again = _import(str(people), "--strangers", str(strangers), "--home", home)
    assert (again["people_found"], again["strangers_found"], again["strangers_created"]) == (2, 4, 0)
    assert again["photos_accepted"] == 0 and again["photos_already_imported"] == len(PEOPLE) * 4 + 6
    assert again["training_requested"] is False and again["version"] == 1

    # Strangers alone: only the new loose photo becomes a stranger, and a version follows. A loose
    # photo that is a broken link is refused by name (it vanished without a word).
    _link(strangers, [UNKNOWN[3]])
    (strangers / "moved.jpg").symlink_to(tmp_path / "not-there.jpg")
    alone = _import("--strangers", str(strangers), "--home", home)
    assert (alone["strangers_created"], alone["strangers_found"], alone["people_found"]) == (1, 4, 0)
    refused = [(r["file"], r["reasons"]) for r in alone["refused"]]
    assert ("moved.jpg", ["unreadable_file"]) in refused  # beside the dog, refused again each run
    assert all(r["stranger"] is None for r in alone["refused"]), alone["refused"]  # not "unreadable ..."
    assert alone["version"] == 2
    (strangers / "moved.jpg").unlink()

    with local_client(create_app(Settings(home=Path(home)))) as client:
        listed = client.get("/api/v1/strangers").json()
        assert listed["total"] == 5
        sources = {s["source"] for s in listed["items"]}
        assert "Hugo_Chavez" in sources and len(sources) == 5
        assert client.get("/api/v1/people").json()["total"] == len(PEOPLE)
        labels = client.get("/api/v1/models/2/files/labels.txt").text.splitlines()
        assert len(labels) == len(PEOPLE) + 1 and not any("Chavez" in label for label in labels)

    # Other photos of an enrolled person given as a stranger: accepted, and the server's warning is
    # in the summary (a tester's import said only "2 accepted", and that person was rarely named after).
    colin = image_files(LFW10 / "Colin_Powell")[5:7]
    _link(strangers / "Not_Colin", colin)
    said = runner.invoke(app, ["import", "--strangers", str(strangers), "--home", home])
    assert said.exit_code == 0, said.output
    for photo in colin:
        assert (
            f"  note on stranger Not_Colin/{photo.name}: this face looks like Colin Powell's" in said.stdout
        )


def test_strangers_into_a_running_server_then_again(tmp_path: Path, settings: Settings) -> None:
    key = "importer-key"
    people, strangers = _folders(tmp_path)
    with (
        serve_process(tmp_path / "s", settings, FACEFORGE_ADMIN_KEYS=key) as (base, _),
        httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": key}) as http,
    ):
        server = ["--server", base, "--api-key", key]
        first = _import(str(people), "--strangers", str(strangers), *server)
        assert (first["people_created"], first["strangers_created"]) == (len(PEOPLE), 4)
        assert first["version"] == 1  # one version for all of it
        again = _import("--strangers", str(strangers), *server)
        assert (again["strangers_found"], again["strangers_created"], again["photos_accepted"]) == (4, 0, 0)
        assert again["photos_already_imported"] == 6
        assert [v["version"] for v in http.get("/api/v1/models").json()["items"]] == [1]
        assert http.get("/api/v1/strangers").json()["total"] == 4


def test_nothing_to_import_exits_with_one_line(tmp_path: Path) -> None:
    home = ["--home", str(tmp_path / "home")]
    neither = runner.invoke(app, ["import", *home])
    assert neither.exit_code == 2 and "--strangers" in neither.stderr
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(app, ["import", "--strangers", str(tmp_path / "empty"), *home])
    assert empty.exit_code == 2 and "no photos of strangers" in empty.stderr
    missing = runner.invoke(app, ["import", "--strangers", str(tmp_path / "nope"), *home])
    assert missing.exit_code == 2 and missing.stderr.startswith("error: folder not found")


def test_people_and_strangers_from_one_folder_are_refused(tmp_path: Path) -> None:
    """Found by a new user: the same folder as people and as strangers made every one of those
    people a stranger to themselves (never named again), and the version went live."""
    people = tmp_path / "people"
    _link(people / "Colin_Powell", image_files(LFW10 / "Colin_Powell")[:2])
    home = ["--home", str(tmp_path / "home")]
    for strangers in (people, people / "Colin_Powell"):
        result = runner.invoke(app, ["import", str(people), "--strangers", str(strangers), *home])
        assert result.exit_code == 2 and "apart from the people's folder" in result.stderr, result.stderr
    assert not (tmp_path / "home" / "faceforge.db").exists()  # refused before anything was opened
