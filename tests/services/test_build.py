"""``faceforge build`` works in a temporary home of its own, whatever the environment names, and
leaves nothing behind when it fails."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from faceforge.building.build import BuildOptions, build_model
from faceforge.core.config import Settings
from faceforge.core.interrupts import interrupts_held
from faceforge.serving.services.bulk_import import ImportProgress
from tests.api.fixtures import BOTH_DATABASES
from tests.conftest import LFW10


class StopBuild(Exception):
    pass


def _stop_after_the_first_person(_progress: ImportProgress, line: str | None) -> None:
    if line is not None:  # a person's photos are stored
        raise StopBuild


@BOTH_DATABASES
def test_a_build_never_writes_to_the_database_the_environment_names(
    tmp_path: Path, database_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in the compose file: the live service's database is in the environment the build runs in.
    monkeypatch.setenv("FACEFORGE_DATABASE_URL", database_url)
    outer = Settings(home=settings.home)
    assert outer.database_url is not None and outer.database_url.get_secret_value() == database_url
    builds = tmp_path / "builds"
    out = builds / "model"
    with pytest.raises(StopBuild):
        build_model(BuildOptions(LFW10, out), outer, _stop_after_the_first_person)

    # The failed build left neither OUT nor its hidden work folder.
    assert list(builds.iterdir()) == []
    # The live database was not created, migrated or written.
    if database_url.startswith("sqlite"):
        assert not Path(database_url.split("///", 1)[1]).exists()
    else:
        engine = create_engine(database_url)
        try:
            assert inspect(engine).get_table_names() == []
        finally:
            engine.dispose()


def test_a_stop_whose_interrupt_was_swallowed_writes_nothing(tmp_path: Path, settings: Settings) -> None:
    """SIGTERM's KeyboardInterrupt, landing in a weak reference's callback, was only printed ("Exception
    ignored in"): a tester's terminated build went on, wrote OUT and exited 0. The build asks whether
    a stop came (the signal handler remembers it) and writes nothing."""
    came: list[str] = []

    def progress(_progress: ImportProgress, line: str | None) -> None:
        if line is not None:
            came.append("SIGTERM")  # as the handler records it; its exception is lost here

    builds = tmp_path / "builds"
    with pytest.raises(KeyboardInterrupt):
        build_model(
            BuildOptions(LFW10, builds / "model"), Settings(home=settings.home), progress, lambda: bool(came)
        )
    assert came and list(builds.iterdir()) == []


def test_a_stop_while_out_is_put_in_place_waits_until_it_is_whole() -> None:
    """SIGTERM landing while OUT was renamed into place left a whole OUT said to be unwritten, and the
    0.4-0.8 GB work folder beside it, its removal cut short (a tester's). Signals then wait."""
    received: list[str] = []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: received.append("handled"))
    try:
        with interrupts_held(signal.SIGINT, signal.SIGTERM):  # as build_model puts OUT in place
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # delivered by now, were it not deferred
            received.append("block ended")
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == ["block ended", "handled"]
