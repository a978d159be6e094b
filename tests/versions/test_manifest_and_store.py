"""The version store: a version written with its manifest reads back as the same head; a damaged or
inconsistent version is refused; older releases' manifests still load; the CURRENT pointer moves."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from faceforge.building.head_fitting import fit_head
from faceforge.building.version_builder import bench_people, version_manifest
from faceforge.core.atomic import file_sha256
from faceforge.core.checksums import record_sha256
from faceforge.core.errors import ModelNotReadyError
from faceforge.core.model.head import RecognitionHead
from faceforge.core.model.head_files import head_bytes
from faceforge.core.model.manifest import (
    HEAD_FILE,
    MANIFEST_FILE,
    ManifestError,
    VersionManifest,
    read_manifest_bytes,
)
from faceforge.storage.version_store import VersionStore, link_or_copy, served_files


@pytest.fixture(scope="module")
def head(lfw10_embeddings: tuple[np.ndarray, list[str], list[Path]]) -> RecognitionHead:
    """A head of the lfw10 people, labelled as the builder labels people 1..10."""
    vectors, names, _ = lfw10_embeddings
    ids = {name: i + 1 for i, name in enumerate(sorted(set(names)))}
    return fit_head(vectors, [f"person {ids[name]} ({ids[name]})" for name in names])


def _manifest(head: RecognitionHead, version: int = 1) -> VersionManifest:
    return version_manifest(version, head, bench_people(len(head.labels)), {"accept_rate": 1.0}, {})


def test_a_published_version_reads_back_as_the_same_head(
    tmp_path: Path, head: RecognitionHead, lfw10_embeddings: tuple[np.ndarray, list[str], list[Path]]
) -> None:
    store = VersionStore(tmp_path / "models")
    written = store.publish(_manifest(head), {HEAD_FILE: head_bytes(head)})
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["1"]  # no staging left behind
    assert written.files[HEAD_FILE].size == (tmp_path / "models" / "1" / HEAD_FILE).stat().st_size

    opened = store.open(1)
    assert opened.manifest == written
    again = opened.head()
    vectors = lfw10_embeddings[0]
    np.testing.assert_array_equal(again.prototypes, head.prototypes)
    np.testing.assert_array_equal(again.probabilities(vectors), head.probabilities(vectors))
    assert opened.manifest.label_of(3) == "person 3 (3)"
    # Canonical bytes: the manifest on disk is what to_json gives, so a rewrite is byte-identical.
    assert (tmp_path / "models" / "1" / MANIFEST_FILE).read_bytes() == written.to_json()
    for name, entry in served_files(written).items():
        assert file_sha256(tmp_path / "models" / "1" / name) == entry.sha256


def test_a_damaged_head_is_not_served(tmp_path: Path, head: RecognitionHead) -> None:
    store = VersionStore(tmp_path / "models")
    store.publish(_manifest(head), {HEAD_FILE: head_bytes(head)})
    path = tmp_path / "models" / "1" / HEAD_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelNotReadyError, match="checksum"):
        store.open(1).head()


def test_an_inconsistent_manifest_is_never_published(tmp_path: Path, head: RecognitionHead) -> None:
    store = VersionStore(tmp_path / "models")
    with pytest.raises(ValueError, match="head_file"):
        store.publish(_manifest(head), {"labels.txt": b"x\n"})  # the head's file is missing
    with pytest.raises(ValueError, match="unsafe"):
        store.publish(_manifest(head), {HEAD_FILE: head_bytes(head), "../escape": b""})
    assert list((tmp_path / "models").iterdir()) == []

    raw = json.loads(_manifest(head).to_json())
    raw["people"] = raw["people"][1:]
    with pytest.raises(ManifestError, match="one entry per label"):
        read_manifest_bytes(json.dumps(raw).encode(), where="test")
    raw = json.loads(_manifest(head).to_json())
    raw["format"] = "faceforge-model/99"
    with pytest.raises(ManifestError, match="unsupported manifest format 'faceforge-model/99'"):
        read_manifest_bytes(json.dumps(raw).encode(), where="test")
    with pytest.raises(ManifestError, match="not JSON"):
        read_manifest_bytes(b"{", where="test")


def test_a_manifest_of_the_facenet_only_release_still_loads(head: RecognitionHead) -> None:
    """That release wrote no refiner, chip, dlib weight or per-person photo counts."""
    raw = json.loads(_manifest(head).to_json())
    for key in ("refiner", "chip", "onnx", "coreml", "tflite", "variants"):
        raw.pop(key, None)
    raw["embedder"] = {"name": "facenet-casia-flip", "dimension": 512}
    for person in raw["people"]:
        person.pop("photos")
    old = read_manifest_bytes(json.dumps(raw).encode(), where="old")
    assert old.embedder.name == "facenet-casia-flip" and old.refiner is None and old.chip is None


def test_the_current_pointer_moves_on_every_change(tmp_path: Path) -> None:
    store = VersionStore(tmp_path / "models")
    assert store.pointer_stamp() is None
    store.mark_current(1)
    first = store.pointer_stamp()
    store.mark_current(1)  # the same number again still moves it: another process must re-read
    second = store.pointer_stamp()
    assert first is not None and second is not None and first != second
    store.mark_current(None)
    assert (tmp_path / "models" / "CURRENT").read_text().startswith("none ")


def test_a_version_staged_file_by_file_is_published_whole_or_not_at_all(
    tmp_path: Path, head: RecognitionHead
) -> None:
    """The builder writes each format's files while it builds the next: an error at any point (here
    after the head and a shared file were written) leaves neither the version nor its staging."""
    store = VersionStore(tmp_path / "models")
    shared = tmp_path / "backbone.bin"
    shared.write_bytes(b"the same bytes in every version")
    record_sha256(shared)
    with pytest.raises(RuntimeError, match="export failed"), store.stage(1) as staging:
        staging.add(HEAD_FILE, head_bytes(head))
        staging.link("backbone.bin", shared)
        raise RuntimeError("export failed")
    assert list((tmp_path / "models").iterdir()) == []

    with store.stage(1) as staging:
        staging.add(HEAD_FILE, head_bytes(head))
        staging.link("backbone.bin", shared)
        with pytest.raises(ValueError, match="duplicate"):
            staging.add(HEAD_FILE, b"")
        written = staging.publish(_manifest(head))
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["1"]
    assert written.files["backbone.bin"].sha256 == file_sha256(shared)
    assert (tmp_path / "models" / "1" / "backbone.bin").stat().st_ino == shared.stat().st_ino  # linked
    assert store.open(1).manifest == written


SHM = Path("/dev/shm")


def test_a_shared_file_is_linked_and_a_copy_on_another_file_system_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "backbone.onnx"
    source.write_bytes(b"backbone bytes " * 1000)
    linked = tmp_path / "v1-backbone.onnx"
    with caplog.at_level(logging.WARNING, logger="faceforge.storage.version_store"):
        link_or_copy(source, linked)
    assert linked.stat().st_ino == source.stat().st_ino and caplog.records == []

    if not SHM.is_dir() or SHM.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system (/dev/shm) to link across")
    elsewhere = Path(tempfile.mkdtemp(dir=SHM))
    try:
        copied = elsewhere / "backbone.onnx"
        with caplog.at_level(logging.WARNING, logger="faceforge.storage.version_store"):
            link_or_copy(source, copied)
        assert copied.read_bytes() == source.read_bytes() and copied.stat().st_ino != source.stat().st_ino
        (warning,) = caplog.records
        assert warning.levelno == logging.WARNING and "FACEFORGE_WEIGHTS_CACHE" in warning.getMessage()
    finally:
        shutil.rmtree(elsewhere)


def test_a_ready_versions_manifest_is_read_once_and_a_damaged_one_each_time(
    tmp_path: Path, head: RecognitionHead
) -> None:
    """Every phone asks for the current version: its manifest is parsed once per store. A missing or
    damaged one is a ``ManifestError`` naming the version, looked for again on the next call."""
    store = VersionStore(tmp_path / "models")
    written = store.publish(_manifest(head), {HEAD_FILE: head_bytes(head)})
    built = datetime(2026, 1, 1, tzinfo=UTC)
    first = store.published(1, created_at=built)
    assert first.manifest == written and first.files == served_files(written)
    assert store.published(1, created_at=built) is first

    # The same number in a database made anew (another row, another creation time) is read afresh.
    path = tmp_path / "models" / "1" / MANIFEST_FILE
    saved = path.read_bytes()
    path.unlink()
    with pytest.raises(ManifestError, match=r"model version 1: .*no manifest\.json"):
        store.published(1, created_at=built + timedelta(days=1))
    path.write_bytes(b"{damaged")
    with pytest.raises(ManifestError, match="model version 1: not JSON"):
        store.published(1, created_at=built + timedelta(days=1))
    path.write_bytes(saved)
    assert store.published(1, created_at=built + timedelta(days=1)).manifest == written
