"""``faceforge import``: folder-per-person photos into a home or a server, resumable, one version."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceforge.cli.main import app
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.records import VersionStatus
from faceforge.serving.api.app import create_app
from faceforge.storage import training_store
from faceforge.storage.engine import make_engine, make_sessionmaker
from tests.api.fixtures import local_client, serve_process
from tests.conftest import FACES, LFW10
from tests.vision.test_heic import heic_of

runner = CliRunner()
PEOPLE = ("Colin_Powell", "Tony_Blair", "Hugo_Chavez", "George_W_Bush")


def _folder(tmp_path: Path, photos_each: int = 4, people: tuple[str, ...] = PEOPLE) -> Path:
    """Folder-per-person photos (symlinks to the shared ones), and a cat among Tony Blair's."""
    root = tmp_path / "people"
    for person in people:
        (root / person).mkdir(parents=True)
        for photo in image_files(LFW10 / person)[:photos_each]:
            (root / person / photo.name).symlink_to(photo)
    cat = image_files(FACES / "negatives")[0]
    (root / "Tony_Blair" / f"not-a-face{cat.suffix}").symlink_to(cat)
    return root


def _import(home: Path, folder: Path, *args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["import", str(folder), "--home", str(home), "--json", *args])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def _mixed_person(root: Path) -> Path:
    """One folder of four different people's photos: a person whose held-out photos are not named."""
    (root / "Mixed").mkdir(parents=True)
    for person in ("Ariel_Sharon", "Arnold_Schwarzenegger", "Donald_Rumsfeld", "Gerhard_Schroeder"):
        photo = image_files(LFW10 / person)[0]
        (root / "Mixed" / photo.name).symlink_to(photo)
    return root


# `faceforge` as from a terminal: SIGINT at its default. A suite started in the background (`pytest &`)
# has it ignored, and children inherit that (Python then installs no Ctrl-C handler at all).
FOREGROUND = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('faceforge.cli.main', run_name='__main__', alter_sys=True)"
)
LIMIT = 200_000  # bytes: the lfw photos are about 20 KB


def _larger_than(limit: int, path: Path) -> bytes:
    """``path`` enlarged as a JPEG of more than ``limit`` bytes (a phone's full-size photo)."""
    with Image.open(path) as photo:
        buffer = io.BytesIO()
        photo.resize((2400, 2400)).save(buffer, format="JPEG", quality=97)
    assert buffer.tell() > limit
    return buffer.getvalue()


def test_import_into_a_home_then_again(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FACEFORGE_WEIGHTS_CACHE", str(settings.weights_dir))
    monkeypatch.setenv("FACEFORGE_WORKER__FORMATS", "onnx")
    monkeypatch.setenv("FACEFORGE_LIMITS__MAX_FILE_BYTES", str(LIMIT))
    folder = _folder(tmp_path)
    # A photo beside the person folders is nobody's: not imported, and said so (it was dropped silently).
    stray = folder / "stray.jpg"
    stray.symlink_to(image_files(LFW10 / "Ariel_Sharon")[0])
    # An iPhone's HEIC photo is a photo (it was skipped without a word).
    (folder / "George_W_Bush" / "IMG_0001.HEIC").write_bytes(heic_of(image_files(LFW10 / "George_W_Bush")[4]))
    # A photo over the size limit, and a folder whose name is no name, are refused on their own: each
    # ended the whole import at that folder, on every run, and the folders after it were never imported.
    (folder / "Hugo_Chavez" / "huge.jpg").write_bytes(
        _larger_than(LIMIT, image_files(LFW10 / "Hugo_Chavez")[5])
    )
    (folder / "__").mkdir()
    (folder / "__" / "nameless.jpg").symlink_to(image_files(LFW10 / "Ariel_Sharon")[1])
    # Hidden names are nobody's and no photos: a ".thumbnails" folder became a person of that name, and
    # macOS's "._" files beside each photo were refused as not images.
    (folder / ".thumbnails").mkdir()
    (folder / ".thumbnails" / "t.jpg").symlink_to(image_files(LFW10 / "Ariel_Sharon")[2])
    (folder / "Colin_Powell" / "._Colin_Powell_0001.jpg").write_bytes(b"\0\5\26\7 AppleDouble")
    # A file that cannot be read (a broken link) is that photo's refusal: it ended the import with a
    # traceback, and nobody was imported.
    (folder / "Colin_Powell" / "moved.jpg").symlink_to(tmp_path / "not-there.jpg")
    # The same file twice in one folder is imported once and said so: it was counted as "already
    # imported" on a first run, as if an earlier run had imported it.
    bush = sorted((folder / "George_W_Bush").glob("George_W_Bush_*"))[0]
    (folder / "George_W_Bush" / "George_W_Bush_copy.jpg").write_bytes(bush.read_bytes())
    first = _import(home, folder)
    assert first["photos_already_imported"] == 0
    assert [(r["person"], r["file"], r["message"]) for r in first["repeated"]] == [
        ("George_W_Bush", "George_W_Bush_copy.jpg", f"the same file as {bush.name}, which stands for both")
    ]
    assert first["ignored"] == [str(stray)]
    assert first["people_created"] == len(PEOPLE) and first["people_found"] == 0
    assert first["photos_accepted"] == len(PEOPLE) * 4 + 1
    refusals = [("Tony_Blair", ["no_face"]), ("Hugo_Chavez", ["file_too_large"]), ("__", ["name_required"])]
    refusals.append(("Colin_Powell", ["unreadable_file"]))
    assert sorted((r["person"], r["reasons"]) for r in first["refused"]) == sorted(refusals)
    assert {r["file"] for r in first["refused"]} >= {"huge.jpg", "nameless.jpg"}
    assert first["version"] == 1 and not first["interrupted"]

    again = _import(home, folder)
    assert (again["people_created"], again["people_found"]) == (0, len(PEOPLE))
    assert again["photos_accepted"] == 0 and again["photos_already_imported"] == len(PEOPLE) * 4 + 1
    assert again["training_requested"] is False and again["version"] == 1  # no new version

    text = runner.invoke(app, ["import", str(folder), "--home", str(home)])
    assert text.exit_code == 0 and "nothing new was imported" in text.stdout
    assert f"ignored {stray}: not in a person's folder" in text.stdout
    assert (
        f"repeated George_W_Bush/George_W_Bush_copy.jpg: the same file as {bush.name}, which stands for both"
        in text.stdout
    )

    with local_client(create_app(Settings(home=home))) as client:
        people = client.get("/api/v1/people").json()["items"]
        assert sorted((p["name"], p["external_id"]) for p in people) == sorted(
            (person.replace("_", " "), person) for person in PEOPLE
        )
        assert [v["version"] for v in client.get("/api/v1/models").json()["items"]] == [1]
        probe = image_files(LFW10 / "Hugo_Chavez")[7]
        found = client.post("/api/v1/identify", files={"photo": (probe.name, probe.read_bytes())}).json()
        assert found["faces"][0]["match"]["name"] == "Hugo Chavez"

    # A version the import trained but that is not made current says so, with the reason: only
    # "model version 1 is current" was said, and the person just imported was not recognised.
    monkeypatch.setenv("FACEFORGE_WORKER__MIN_KNOWN_ACCEPT", "1.0")
    mixed = _mixed_person(tmp_path / "more")
    held = runner.invoke(app, ["import", str(mixed), "--home", str(home)])
    assert held.exit_code == 0, held.output
    assert "model version 2 is not current: held back: held-out known photos" in held.stdout
    assert "model version 1 is current" in held.stdout


def test_the_next_run_trains_the_version_a_run_left_unbuilt(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped while it trained, or run with --no-wait on a home no server watches, leaves its
    version asked for and never built; the next run found nothing new and trained nothing, so the
    home kept its people and no model, on every run after (a tester's)."""
    home = tmp_path / "home"
    monkeypatch.setenv("FACEFORGE_WEIGHTS_CACHE", str(settings.weights_dir))
    monkeypatch.setenv("FACEFORGE_WORKER__FORMATS", "onnx")
    folder = _folder(tmp_path, photos_each=3, people=PEOPLE[:2])
    first = _import(home, folder, "--no-wait")
    assert first["training_requested"] and first["version"] is None
    again = runner.invoke(app, ["import", str(folder), "--home", str(home)])
    assert again.exit_code == 0, again.output
    assert "nothing new was imported; the version an earlier run asked for was trained" in again.stdout
    assert "model version 1 is current" in again.stdout
    # Once built, nothing more is trained.
    third = _import(home, folder)
    assert not third["training_requested"] and not third["trained_earlier_request"]
    assert third["version"] == 1


def _stopped_once_importing(
    command: list[str], env: dict[str, str], number: signal.Signals
) -> tuple[int, str]:
    """Run ``command`` and send it ``number`` once it says it is importing: its exit code and stdout.
    Not a terminal: plain lines. The first says the import is under way; a stop from then on ends it
    with the people in flight finished and the rest never started."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("importing "):
            process.send_signal(number)
            break
    out, _ = process.communicate(timeout=120)
    return process.returncode, out


def test_ctrl_c_stops_cleanly_and_a_second_run_resumes(tmp_path: Path, settings: Settings) -> None:
    everyone = tuple(sorted(p.name for p in LFW10.iterdir() if p.is_dir()))
    folder = _folder(tmp_path, photos_each=6, people=everyone)
    home = tmp_path / "home"
    env = {
        **os.environ,
        "FACEFORGE_WEIGHTS_CACHE": str(settings.weights_dir),
        "FACEFORGE_WORKER__FORMATS": "onnx",
    }
    command = [sys.executable, "-c", FOREGROUND, "import", str(folder), "--home", str(home), "--json"]
    returncode, out = _stopped_once_importing(command, env, signal.SIGINT)
    assert returncode == 130
    stopped = json.loads(out)
    # Interrupted after the first person: the people being imported finish, the rest never start.
    assert stopped["interrupted"] and 0 < stopped["photos_accepted"] < len(everyone) * 6
    assert stopped["training_requested"]  # what was stored is asked to be trained

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True)
    summary = json.loads(resumed.stdout)
    assert summary["photos_already_imported"] == stopped["photos_accepted"]
    assert stopped["photos_accepted"] + summary["photos_accepted"] == len(everyone) * 6
    assert stopped["people_created"] + summary["people_created"] == len(everyone)
    assert summary["version"] == 1  # one version for both runs


def test_sigterm_stops_as_ctrl_c_does_with_its_summary(tmp_path: Path, settings: Settings) -> None:
    """SIGTERM (a service manager's stop, a CI job's timeout) ended the import at once: exit 143 with
    no summary and no word (a tester's). It stops as Ctrl-C does, and says what was stored."""
    folder = _folder(tmp_path, photos_each=3, people=PEOPLE[:3])
    env = {
        **os.environ,
        "FACEFORGE_WEIGHTS_CACHE": str(settings.weights_dir),
        "FACEFORGE_WORKER__FORMATS": "onnx",
    }
    command = [
        sys.executable,
        "-c",
        FOREGROUND,
        "import",
        str(folder),
        "--home",
        str(tmp_path / "home"),
        "--json",
    ]
    returncode, out = _stopped_once_importing(command, env, signal.SIGTERM)
    assert returncode == 128 + signal.SIGTERM, out
    stopped = json.loads(out)
    assert stopped["interrupted"] and stopped["photos_accepted"] > 0, stopped


def test_ctrl_c_while_training_stops_the_version_and_the_next_run_builds_its_changes(
    tmp_path: Path, settings: Settings
) -> None:
    """Stopped while it trained, the version stayed "building" until the next run took it over as
    "the worker ... stopped responding", which reads as a crash (a tester's). It is now failed as
    stopped at once, and the next run builds its changes."""
    folder = _folder(tmp_path, photos_each=3, people=PEOPLE[:2])
    home = tmp_path / "home"
    env = {
        **os.environ,
        "FACEFORGE_WEIGHTS_CACHE": str(settings.weights_dir),
        "FACEFORGE_WORKER__FORMATS": "onnx",
    }
    command = [sys.executable, "-c", FOREGROUND, "-v", "import", str(folder), "--home", str(home), "--json"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:  # -v: the worker says when it has claimed the version
        if "training version 1 " in line:
            process.send_signal(signal.SIGINT)
            break
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 130, out
    assert json.loads(out)["interrupted"]
    home_settings = settings.model_copy(update={"home": home, "database_url": None})
    engine = make_engine(home_settings.resolved_database_url)
    try:
        with make_sessionmaker(engine)() as session:
            stopped = training_store.get_version(session, version=1)
            status = training_store.training_status(session, stale_after=60.0)
        assert (stopped.status, stopped.status_message) == (VersionStatus.FAILED, training_store.STOPPED)
        assert status.state == "queued" and status.requested > status.built  # still asked for
        assert status.last_failure_version is None  # stopped, not failed: the status warns of nothing
        resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        summary = json.loads(resumed.stdout)
        assert summary["trained_earlier_request"] and summary["version"] == 2, summary
    finally:
        engine.dispose()


def test_import_into_a_running_server_trains_once(tmp_path: Path, settings: Settings) -> None:
    """A real `faceforge serve` with its embedded worker, and `faceforge import --server`: photos are
    stored with train=false, so the server builds one version at the end, not one per person."""
    with (
        serve_process(
            tmp_path / "s",
            settings,
            FACEFORGE_ADMIN_KEYS="importer-key",
            FACEFORGE_LIMITS__MAX_FILE_BYTES=str(LIMIT),
            # The first version is always made current; a later one below the floor is held back.
            FACEFORGE_WORKER__MIN_KNOWN_ACCEPT="1.0",
        ) as (base, _),
        httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": "importer-key"}) as http,
    ):
        folder = _folder(tmp_path)
        # The server's 413 for one photo refuses that photo: it ended the import with one line.
        (folder / "Hugo_Chavez" / "huge.jpg").write_bytes(
            _larger_than(LIMIT, image_files(LFW10 / "Hugo_Chavez")[5])
        )
        refused_key = runner.invoke(app, ["import", str(folder), "--server", base, "--api-key", "wrong"])
        assert refused_key.exit_code == 2 and "refused the key" in refused_key.stderr
        result = runner.invoke(
            app, ["import", str(folder), "--server", base, "--api-key", "importer-key", "--json"]
        )
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["people_created"] == len(PEOPLE) and summary["photos_accepted"] == len(PEOPLE) * 4
        too_large = [r for r in summary["refused"] if r["reasons"] == ["file_too_large"]]
        assert [(r["person"], r["file"]) for r in too_large] == [("Hugo_Chavez", "huge.jpg")]
        # In the API's words, as an import into a home says them ("413 file_too_large: ..." before).
        assert too_large[0]["message"].startswith("huge.jpg is larger than the limit"), too_large
        assert summary["version"] == 1
        assert [v["version"] for v in http.get("/api/v1/models").json()["items"]] == [1]
        again = runner.invoke(
            app, ["import", str(folder), "--server", base, "--api-key", "importer-key", "--json"]
        )
        assert json.loads(again.stdout)["photos_already_imported"] == len(PEOPLE) * 4
        assert [v["version"] for v in http.get("/api/v1/models").json()["items"]] == [1]
        held = runner.invoke(
            app,
            ["import", str(_mixed_person(tmp_path / "more")), "--server", base, "--api-key", "importer-key"],
        )
        assert held.exit_code == 0, held.output
        assert "model version 2 is not current: held back: held-out known photos" in held.stdout
        assert "model version 1 is current" in held.stdout


class _QuietFiles(SimpleHTTPRequestHandler):
    """Another web application: files from a folder, without a log line on this process's stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_bad_folder_or_server_exits_with_one_line(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["import", str(tmp_path / "nope"), "--home", str(tmp_path / "home")])
    assert missing.exit_code == 2 and missing.stderr.startswith("error: folder not found")
    # A file given as the folder is said so, not "folder not found" (a tester's).
    photo = next(iter((LFW10 / "Colin_Powell").iterdir()))
    a_file = runner.invoke(app, ["import", str(photo), "--home", str(tmp_path / "home")])
    assert a_file.exit_code == 2 and a_file.stderr == f"error: {photo} is a file, not a folder\n"
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(app, ["import", str(tmp_path / "empty"), "--home", str(tmp_path / "home")])
    assert empty.exit_code == 2 and "no person folders" in empty.stderr
    folder = _folder(tmp_path)
    unreachable = runner.invoke(app, ["import", str(folder), "--server", "http://127.0.0.1:9"])
    assert unreachable.exit_code == 2 and unreachable.stderr.startswith("error: cannot reach")
    assert unreachable.stderr.strip().count("\n") == 0
    # A mistyped port and another web application were tracebacks.
    mistyped = runner.invoke(app, ["import", str(folder), "--server", "http://127.0.0.1:8000x"])
    assert mistyped.exit_code == 2 and "is not a URL" in mistyped.stderr, mistyped.output
    assert mistyped.stderr.strip().count("\n") == 0
    site = tmp_path / "site"
    (site / "api" / "v1").mkdir(parents=True)
    (site / "api" / "v1" / "training").write_text("<html><body>Welcome</body></html>")
    handler = partial(_QuietFiles, directory=str(site))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{other.server_address[1]}"
        elsewhere = runner.invoke(app, ["import", str(folder), "--server", url])
        other.shutdown()
    assert elsewhere.exit_code == 2 and "is not a faceforge server" in elsewhere.stderr, elsewhere.output
    assert elsewhere.stderr.strip().count("\n") == 0
    (site / "api" / "v1" / "training").unlink()  # now its HTML 404 page: quoted over ten lines
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        missing = runner.invoke(
            app, ["import", str(folder), "--server", f"http://127.0.0.1:{other.server_address[1]}"]
        )
        other.shutdown()
    assert (
        missing.exit_code == 2
        and "404 File not found (text/html: not an answer of faceforge" in missing.stderr
    )
    assert missing.stderr.strip().count("\n") == 0, missing.stderr


def test_two_imports_of_one_folder_at_once_find_each_others_people(
    tmp_path: Path, settings: Settings
) -> None:
    """Both runs exited 0 with the data right, but one listed dozens of photos as refused
    ("conflict: external_id 'Holly_Hunter' already belongs to person 1"): the person the other run
    created meanwhile is found, and the photos it stored are already imported (a tester's)."""
    people = tuple(sorted(p.name for p in LFW10.iterdir() if p.is_dir()))
    folder = _folder(tmp_path, photos_each=2, people=people)
    environment = {
        **os.environ,
        "FACEFORGE_WEIGHTS_CACHE": str(settings.weights_dir),
        "FACEFORGE_WORKER__FORMATS": "onnx",
    }
    command = [sys.executable, "-m", "faceforge.cli.main", "import", str(folder), "--json"]
    runs = [
        subprocess.Popen(
            [*command, "--home", str(tmp_path / "home")],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    summaries = []
    for run in runs:
        out, lines = run.communicate(timeout=300)
        assert run.returncode == 0
        summaries.append(json.loads(out))
        # Each person's line counts the photos the other run stored too (it said none).
        said = sum(int(n) for n in re.findall(r"refused, (\d+) already imported", lines))
        assert said == summaries[-1]["photos_already_imported"], lines
    for summary in summaries:
        assert [r["reasons"] for r in summary["refused"]] == [["no_face"]], summary["refused"]  # the cat
        assert summary["people_created"] + summary["people_found"] == len(people), summary
        assert summary["photos_accepted"] + summary["photos_already_imported"] == len(people) * 2
    assert sum(s["people_created"] for s in summaries) == len(people)
    assert sum(s["photos_accepted"] for s in summaries) == len(people) * 2
