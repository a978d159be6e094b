"""``faceforge serve`` and ``faceforge worker`` refuse a home they cannot use with one line, before
anything starts (they printed a start-up traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceforge.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_home_that_cannot_be_made_is_one_line(command: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for home, says in (
        (Path("/proc/nope"), "cannot create the home /proc/nope"),
        (blocker / "home", f"cannot create the home {blocker / 'home'}"),
    ):
        result = runner.invoke(app, [command, "--home", str(home)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error: {says}: ") and result.stderr.count("\n") == 1
