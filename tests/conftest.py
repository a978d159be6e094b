"""Shared fixtures: real photos from ../shared/faces and one vision pipeline per test session."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest

from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.memory import limit_malloc_arenas, return_large_buffers, trim_heap
from faceforge.serving.vision.pipeline import FacePipeline, PhotoError, prepare_networks

# Service fixtures (databases, app clients) are shared by tests/api and tests/export.
pytest_plugins = ["tests.api.fixtures"]

# The suite's API processes (in-process and spawned: the environment is inherited) do not keep idle
# cores awake: on a haltpoll VM they would spin through every burst of test requests, beside the other
# pytest worker. tests/services/test_awake_cores.py runs the pollers themselves.
os.environ.setdefault("FACEFORGE_IDLE_POLL_MS", "0")

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
LFW10 = FACES / "krasserm_lfw10"

# The apps the tests open run in this process with the malloc settings `faceforge serve` gives its own.
limit_malloc_arenas()
return_large_buffers()


@pytest.fixture(autouse=True)
def _give_memory_back() -> Iterator[None]:
    """After each test, return freed memory to the system, and once the process has grown past
    ``COLLECT_ABOVE_BYTES`` collect the closed apps' reference cycles first: hundreds of apps open and
    close in this one process (the suite stays under 6 GB). A full collection takes about a second
    here (torch and the converters are loaded), so not after every test: 4 minutes of the suite."""
    yield
    if _resident_bytes() > COLLECT_ABOVE_BYTES:
        gc.collect()
    trim_heap()


COLLECT_ABOVE_BYTES = 3 << 30


def process_state(pid: int) -> str:
    """The process's scheduler state letter (R running, S sleeping, Z zombie), or "" once gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone (FileNotFoundError), or reaped while read (ProcessLookupError)
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    assert LFW10.is_dir(), f"the shared dev photos are expected at {FACES}"
    return FACES


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One faceforge home per test session, so runs never collide, and one weights cache per run, so
    weights are converted once: the pytest-xdist workers share it (every conversion into the cache
    is atomic and takes a file lock, as for the processes of a deployment), which spares the second
    worker several minutes of conversions on two cores. ``FACEFORGE_WEIGHTS_CACHE`` still wins.

    The home's own ``weights`` folder is a link to that cache, not a setting: commands the tests run
    with ``--home`` (build, eval, export, worker) read it there as a user's would, and would convert
    everything again into an empty folder otherwise (a minute and a half per command on two cores)."""
    home = tmp_path_factory.mktemp("faceforge-home")
    if os.environ.get("FACEFORGE_WEIGHTS_CACHE"):
        return Settings(home=home)
    run = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run = run.parent  # each worker's base is a folder of the run's
    weights = run / "shared-weights"
    weights.mkdir(exist_ok=True)
    (home / "weights").symlink_to(weights, target_is_directory=True)
    settings = Settings(home=home)
    assert settings.weights_dir.resolve() == weights.resolve()
    return settings


@pytest.fixture(scope="session", autouse=True)
def _weights_converted_on_both_cores(settings: Settings) -> None:
    """A run's first conversions, split between two pytest-xdist workers (a third starts on tests that
    need neither, or waits on their locks): the first converts the server's networks (MTCNN, the
    embedding graph and its int8 variant, in child processes), then the TFLite backbones; the second
    the on-device backbones (refiner, Core ML, TFLite). Each needs both sooner or later; converted
    lazily, the first test of each worker wanted the embedding graph, and one worker waited a couple
    of minutes on the other's lock. The networks take the first some 37 s, the backbones the second
    some 75: the first waited half a minute for the TFLite files its first tests export (measured in
    a CI run's timeline), and now converts them while the second does Core ML. Every conversion keeps
    its own lock, so neither repeats the other's work."""
    if os.environ.get("FACEFORGE_WEIGHTS_CACHE"):
        return  # converted already
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker == "gw0":
        from faceforge.building.export.device_backbones import DeviceBackboneCache
        from faceforge.building.networks.detector_graphs import write_split_graph

        prepare_networks(settings.weights_dir, split=write_split_graph)  # as prepare does: no children
        DeviceBackboneCache(settings.weights_dir).tflite()
    elif worker == "gw1":
        from faceforge.building.export.version_exports import VersionExporter

        VersionExporter(settings.weights_dir).prepare()


@pytest.fixture(scope="session")
def pipeline(settings: Settings) -> FacePipeline:
    pipeline = FacePipeline(settings)
    pipeline.load()
    return pipeline


@pytest.fixture(scope="session")
def lfw10_embeddings(pipeline: FacePipeline) -> tuple[np.ndarray, list[str], list[Path]]:
    """Enrolment embeddings of every accepted krasserm_lfw10 photo, with labels and paths."""
    paths = image_files(LFW10)
    vectors, labels, kept = [], [], []
    for path, result in zip(paths, pipeline.analyze_many(paths, single_face=True), strict=True):
        if isinstance(result, PhotoError) or result.reasons:
            continue
        embedding = result.faces[0].embedding
        assert embedding is not None
        vectors.append(embedding)
        labels.append(path.parent.name)
        kept.append(path)
    return np.stack(vectors), labels, kept


def answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    """A test's stand-in server (a proxy, another origin's page) answers ``body`` whole."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
