"""Enrol/probe splits of a dataset folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceforge.core.dataset import split_dataset
from faceforge.core.errors import DatasetError
from tests.conftest import FACES, LFW10


def test_first_k_in_filename_order() -> None:
    split = split_dataset(LFW10, enroll=5)
    assert len(split.enrolled) == 50 and len(split.probes) == 50
    sharon = [p.path.name for p in split.enrolled if p.label == "Ariel_Sharon"]
    assert sharon == [f"Ariel_Sharon_000{i}.jpg" for i in range(1, 6)]


def test_seeded_split_is_random_but_reproducible() -> None:
    first = split_dataset(LFW10, enroll=5, seed=7)
    assert first == split_dataset(LFW10, enroll=5, seed=7)
    assert first != split_dataset(LFW10, enroll=5, seed=8)
    assert first != split_dataset(LFW10, enroll=5)


def test_people_without_probes_are_skipped() -> None:
    split = split_dataset(FACES / "deepface_tests", enroll=3)
    assert split.skipped_people  # some identities have only 2-3 photos
    assert all(p.label not in split.skipped_people for p in split.enrolled)


@pytest.mark.parametrize("enroll", [0, 50])
def test_unusable_requests_fail(enroll: int) -> None:
    with pytest.raises(DatasetError):
        split_dataset(LFW10, enroll=enroll)


def test_missing_or_flat_folders_fail(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        split_dataset(tmp_path / "nope", enroll=1)
    with pytest.raises(DatasetError, match="no person folders"):
        split_dataset(FACES / "negatives", enroll=1)
