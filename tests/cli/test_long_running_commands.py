"""Every command that writes into a home refuses one it cannot use with one line, before anything
starts (they printed a traceback: serve and worker at start-up, eval, import, build and prepare when
the weights cache was made; a new-user tester found the last four), and ``export`` does not make a
mistyped home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceforge.cli.main import app
from tests.conftest import LFW10

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["worker"],
        ["prepare"],
        ["eval", "--dataset", str(LFW10)],
        ["import", str(LFW10)],
        ["build", "--dataset", str(LFW10), "--out", "{out}"],
    ],
    ids=lambda command: command[0],
)
def test_a_home_that_cannot_be_made_is_one_line(command: list[str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    arguments = [part.format(out=tmp_path / "out") for part in command]
    for home, says in (
        (Path("/proc/nope"), "cannot create the home /proc/nope"),
        (blocker / "home", f"cannot create the home {blocker / 'home'}"),
        (blocker, f"the home {blocker} is a file, not a folder"),  # it said "File exists" (a tester's)
    ):
        result = runner.invoke(app, [*arguments, "--home", str(home)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error: {says}") and result.stderr.count("\n") == 1


def test_export_does_not_make_a_mistyped_home(tmp_path: Path) -> None:
    home = tmp_path / "mistyped"
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["export", "--version", "1", "--format", "onnx", "--out", str(out), "--home", str(home)]
    )
    assert result.exit_code == 2 and result.stderr.startswith(f"error: no faceforge home at {home} ")
    assert not home.exists() and not out.exists()
    # A folder that is no faceforge home (say, --home ~) is not made one either.
    plain = tmp_path / "plain"
    plain.mkdir()
    result = runner.invoke(
        app, ["export", "--version", "1", "--format", "onnx", "--out", str(out), "--home", str(plain)]
    )
    assert result.exit_code == 2 and list(plain.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "--workers", "2"],
        ["serve", "--port", "18555"],  # one process: the app's start-up said it in a hundred lines
        ["worker"],
        ["import", str(LFW10)],
        ["export", "--version", "1", "--format", "onnx", "--out", "{out}"],
    ],
    ids=["serve-workers", "serve", "worker", "import", "export"],
)
def test_a_database_that_does_not_answer_is_one_line(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that is down or mistyped: each printed SQLAlchemy's traceback."""
    monkeypatch.setenv("FACEFORGE_DATABASE_URL", "postgresql+psycopg://nobody:secret@127.0.0.1:9/faceforge")
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)  # a home as `export` wants one
    arguments = [part.format(out=tmp_path / "out") for part in command]
    before = dict(os.environ)
    result = runner.invoke(app, [*arguments, "--home", str(home)])
    # Nothing of this process changed: serve --workers set FACEFORGE_WORKER__EMBEDDED=false first, and
    # every faceforge server the test process started after it trained nothing.
    assert dict(os.environ) == before
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(
        "error: cannot reach the database postgresql+psycopg://nobody:***@127.0.0.1:9/"
    )
    assert result.stderr.count("\n") == 1 and "secret" not in result.stderr


@pytest.mark.parametrize("command", [["serve", "--port", "18556"], ["worker"], ["import", str(LFW10)]])
def test_a_database_that_does_not_answer_leaves_no_new_home(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The home the command would have made is not left behind empty; a home that was there stays."""
    monkeypatch.setenv("FACEFORGE_DATABASE_URL", "postgresql+psycopg://nobody:secret@127.0.0.1:9/faceforge")
    new = tmp_path / "new" / "home"
    result = runner.invoke(app, [*command, "--home", str(new)])
    assert result.exit_code == 2 and "cannot reach the database" in result.stderr
    assert list(tmp_path.iterdir()) == []
    there = tmp_path / "there"
    there.mkdir()
    assert runner.invoke(app, [*command, "--home", str(there)]).exit_code == 2
    assert there.is_dir()
