"""Durable writes: readers see the whole file or the old one, and the file's mode follows the umask."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from faceforge.core.atomic import write_atomically, write_bytes_atomically


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_file_has_the_mode_of_any_new_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.touch()  # 0o666 less the umask, as every other file faceforge writes
    target = tmp_path / "photos" / "one.jpg"
    write_bytes_atomically(target, b"\xff\xd8 photo")
    assert target.read_bytes() == b"\xff\xd8 photo"
    assert _mode(target) == _mode(plain)
    assert list(target.parent.iterdir()) == [target]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    write_bytes_atomically(target, b"version 1")

    def half_then_fail(temp: Path) -> None:
        temp.write_bytes(b"vers")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_then_fail)
    assert target.read_bytes() == b"version 1"
    assert list(tmp_path.iterdir()) == [target]
