"""The int8 embedding graph is held to the float one (the reference) on real faces, and a process runs it
only where this machine computes it as the fitting machine did."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from faceforge.building.head_fitting import fit_head
from faceforge.building.networks.embedding_quantization import (
    exact_int8_session,
    quantize_embedding_graph,
)
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.errors import WeightsUnavailableError
from faceforge.serving.vision.embedder import (
    FAST_KERNELS_COSINE,
    INT8_CHECK_COSINE,
    INT8_CHECK_FILE,
    KERNEL_VERDICTS,
    FaceEmbedder,
    FlipPassSession,
    Int8Check,
    embedding_onnx_path,
    flip_part_paths,
    graph_feeds,
    int8_check_cosine,
    int8_onnx_path,
    unit_rows,
)
from faceforge.serving.vision.face_input import FaceInputs
from faceforge.serving.vision.pipeline import FacePipeline
from tests.conftest import FACES, LFW10, process_state

# Quantisation's own error on real faces, measured where the ranges were fitted (227 faces of folders
# no test or benchmark scores): cosine with the float embedding 0.9984 at worst, 0.9993 on average.
# A face's bar is three times that worst error, so only a broken graph or arithmetic misses it.
FACE_COSINE = 1 - 3 * (1 - 0.9984)
MEAN_COSINE = 1 - 3 * (1 - 0.9993)


def _faces(pipeline: FacePipeline, folders: list[Path]) -> tuple[FaceInputs, list[str]]:
    """The largest confident face of every photo under ``folders``, with its folder's name."""
    crops, chips, names = [], [], []
    for folder in folders:
        for path in image_files(folder):
            image = pipeline.decode(path.read_bytes())
            faces = [face for face in pipeline.detect(image) if face.score >= 0.95]
            if faces:
                inputs = pipeline.inputs(image, [faces[0].box])
                crops.append(inputs.crops[0])
                chips.append(inputs.chips[0])
                names.append(path.parent.name if folder == LFW10 else "")
    return FaceInputs(np.stack(crops), np.stack(chips)), names


@pytest.fixture(scope="module")
def graphs(settings: Settings) -> tuple[FaceEmbedder, FaceEmbedder]:
    reference = FaceEmbedder(settings.weights_dir, precision="float")
    int8 = FaceEmbedder(settings.weights_dir, precision="int8")
    reference.load()
    int8.load()
    assert (reference.precision, int8.precision) == ("float", "int8")
    return reference, int8


def test_int8_embeddings_and_decisions_hold_to_the_float_graph(
    pipeline: FacePipeline, graphs: tuple[FaceEmbedder, FaceEmbedder]
) -> None:
    reference, int8 = graphs
    inputs, names = _faces(pipeline, [LFW10, FACES / "unknown_singles", FACES / "azure_face_samples"])
    exact, quantised = reference.embed(inputs), int8.embed(inputs)
    np.testing.assert_allclose(np.linalg.norm(quantised, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(exact * quantised, axis=1)
    assert cosines.min() >= FACE_COSINE and cosines.mean() >= MEAN_COSINE, (cosines.min(), cosines.mean())

    # A head fitted on float embeddings (a gallery enrolled by the float graph) decides the same on
    # int8 embeddings of the other photos and of strangers: within one probe of 100.
    enrolled = [i for i, name in enumerate(names) if name and names[: i + 1].count(name) <= 5]
    probes = [i for i in range(len(names)) if i not in enrolled]
    head = fit_head(exact[enrolled], [names[i] for i in enrolled], target_unknown_reject=0.97)
    float_answers = [match.index for match in head.predict(exact[probes])]
    int8_answers = [match.index for match in head.predict(quantised[probes])]
    differ = sum(a != b for a, b in zip(float_answers, int8_answers, strict=True))
    assert len(probes) >= 60 and differ <= max(1, len(probes) // 100), (differ, len(probes))
    named = sum(
        a is not None and head.labels[a] == names[i] for a, i in zip(int8_answers, probes, strict=True)
    )
    assert named >= 0.9 * sum(1 for i in probes if names[i]), named


def test_the_int8_graph_runs_as_its_parts_to_the_whole_graphs_embeddings(
    pipeline: FacePipeline, settings: Settings
) -> None:
    one_thread = FaceEmbedder(settings.weights_dir, precision="int8", threads=1)  # batch enrolment
    two_threads = FaceEmbedder(settings.weights_dir, precision="int8", threads=2)  # an API process
    sessions = []
    for embedder in (one_thread, two_threads):
        embedder.load()
        assert isinstance(embedder._onnx, FlipPassSession)
        sessions.append(embedder._onnx)
    assert [session.side_by_side for session in sessions] == [False, True]
    graph = int8_onnx_path(settings.weights_dir, embedding_onnx_path(settings.weights_dir))
    whole = exact_int8_session(graph)
    inputs, _ = _faces(pipeline, [LFW10 / "Tony_Blair", LFW10 / "Colin_Powell"])
    expected = unit_rows(whole.run(graph_feeds(inputs))[0])
    one_by_one = np.concatenate([two_threads.embed(inputs.rows(i, i + 1)) for i in range(len(inputs))])
    # The cut falls on quantised tensors, so the parts compute what the whole graph does (bit for bit
    # where measured); a wrong cut (a pass counted twice, the mirror lost) costs FaceNet's share of
    # the cosine, about 0.01.
    for embeddings in (two_threads.embed(inputs), one_by_one, one_thread.embed(inputs)):
        cosines = np.sum(expected * embeddings, axis=1)
        assert cosines.min() >= 1 - 1e-6, cosines.min()
    # An API process runs the last part on two threads: the same numbers as one thread's.
    assert np.array_equal(two_threads.embed(inputs), one_thread.embed(inputs))


def test_a_cache_quantised_before_the_parts_existed_gets_them_and_keeps_its_graph(
    settings: Settings, tmp_path: Path
) -> None:
    graph = embedding_onnx_path(settings.weights_dir)
    int8 = int8_onnx_path(settings.weights_dir, graph, quantize=quantize_embedding_graph)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / graph.name).hardlink_to(graph)
    (weights / int8.name).write_bytes(int8.read_bytes())
    assert not any(path.exists() for path in flip_part_paths(weights / int8.name))
    again = int8_onnx_path(weights, weights / graph.name, quantize=quantize_embedding_graph)
    assert again == weights / int8.name and again.read_bytes() == int8.read_bytes()
    assert all(path.stat().st_size > 0 for path in flip_part_paths(again))


def test_the_exact_products_run_only_where_the_fast_ones_miss_the_check(settings: Settings) -> None:
    """ONNX Runtime's exact kernels cost twice its fast ones (one pass 10.9 → 21.5 ms on an AMD EPYC
    with AVX-512 VNNI) and are needed only where the fast ones saturate (AVX2 alone): they ran on every
    CPU before."""
    graph = int8_onnx_path(settings.weights_dir, embedding_onnx_path(settings.weights_dir))
    fast = int8_check_cosine(
        FlipPassSession(graph, side_by_side=False, exact_int8=False), Int8Check.load(INT8_CHECK_FILE)
    )
    embedder = FaceEmbedder(settings.weights_dir, threads=2)
    embedder.load()
    assert isinstance(embedder._onnx, FlipPassSession) and embedder.precision == "int8"
    assert embedder._onnx.exact_int8 == (fast < FAST_KERNELS_COSINE), fast
    assert embedder.check_cosine is not None and embedder.check_cosine >= INT8_CHECK_COSINE


def test_the_kernels_are_measured_once_per_machine_and_kept(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Which int8 kernels compute the check's embeddings depends only on the CPU, ONNX Runtime, the
    graph and the check; measuring it built and ran the graph's parts twice on every start of a CPU
    without VNNI (1.1 s of each API process's 1.9 s load on an AMD EPYC with AVX2 alone)."""
    graph = embedding_onnx_path(settings.weights_dir)
    int8 = int8_onnx_path(settings.weights_dir, graph)
    weights = tmp_path / "weights"
    weights.mkdir()
    for path in (graph, int8, *flip_part_paths(int8)):
        (weights / path.name).hardlink_to(path)
    first = FaceEmbedder(weights, threads=2)
    first.load()
    assert isinstance(first._onnx, FlipPassSession)
    kept = sorted((weights / KERNEL_VERDICTS).glob("*.json"))
    assert len(kept) == 1
    record = json.loads(kept[0].read_text())
    fast = int8_check_cosine(
        FlipPassSession(int8, side_by_side=False, exact_int8=False), Int8Check.load(INT8_CHECK_FILE)
    )
    assert record["fast"] == pytest.approx(fast, abs=1e-6)
    assert (record["exact"] is not None) == first._onnx.exact_int8 == (fast < FAST_KERNELS_COSINE)

    # The next process follows the kept verdict and measures nothing: one naming the other kernels
    # is obeyed (so it is read, not measured again).
    other = {"fast": 1.0, "exact": None} if first._onnx.exact_int8 else {"fast": 0.99, "exact": 1.0}
    kept[0].write_text(json.dumps(other))
    with caplog.at_level(logging.INFO, logger="faceforge.serving.vision.embedder"):
        second = FaceEmbedder(weights, threads=2)
        second.load()
    assert isinstance(second._onnx, FlipPassSession)
    assert second._onnx.exact_int8 != first._onnx.exact_int8
    assert "as measured on this machine before" in caplog.text and second.check_cosine == 1.0

    # A verdict that cannot be read is measured again and replaced.
    kept[0].write_text("{not json")
    third = FaceEmbedder(weights, threads=2)
    third.load()
    assert isinstance(third._onnx, FlipPassSession) and third._onnx.exact_int8 == first._onnx.exact_int8
    assert json.loads(kept[0].read_text()) == record


def test_the_shipped_check_passes_on_this_machine(settings: Settings) -> None:
    """On every CPU: without VNNI, ONNX Runtime's fast 8-bit products saturated and the check fell to
    cosine 0.9926 (AMD EPYC with AVX2 only), so such a machine ran the float graph at half the speed."""
    for threads in (1, 2):
        embedder = FaceEmbedder(settings.weights_dir, threads=threads)
        embedder.load()
        assert embedder.precision == "int8"
        assert embedder.check_cosine is not None and embedder.check_cosine >= INT8_CHECK_COSINE


def _check_file(tmp_path: Path, change: str) -> Path:
    record = json.loads(INT8_CHECK_FILE.read_text())
    if change == "arithmetic":  # what a machine computing the graph differently would meet
        embeddings = np.asarray(record["embeddings"])
        record["embeddings"] = np.roll(embeddings, 1, axis=0).tolist()
    else:  # ranges fitted on another embedding graph
        record["graph"] = "facenet-dlib-w0.8-0000000000000000-int8-000000000000.onnx"
    path = tmp_path / f"{change}.json"
    path.write_text(json.dumps(record))
    return path


def test_a_machine_that_computes_the_int8_graph_differently_runs_the_float_one(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    check = _check_file(tmp_path, "arithmetic")
    with caplog.at_level(logging.WARNING):
        auto = FaceEmbedder(settings.weights_dir, int8_check=check)
        auto.load()
    assert auto.precision == "float" and auto.check_cosine is not None
    assert auto.check_cosine < INT8_CHECK_COSINE
    assert "running the float one" in caplog.text
    forced = FaceEmbedder(settings.weights_dir, precision="int8", int8_check=check)
    forced.load()
    assert forced.precision == "int8"  # the setting forces it, with the warning


def test_ranges_of_another_graph_leave_the_float_graph(settings: Settings, tmp_path: Path) -> None:
    check = _check_file(tmp_path, "graph")
    auto = FaceEmbedder(settings.weights_dir, int8_check=check)
    auto.load()
    assert auto.precision == "float" and auto.check_cosine is None
    with pytest.raises(WeightsUnavailableError, match="refit"):
        FaceEmbedder(settings.weights_dir, precision="int8", int8_check=check).load()


def test_a_process_without_the_quantiser_makes_the_int8_graph_in_a_child(
    settings: Settings, tmp_path: Path
) -> None:
    """What an API process does when its cache has the float graph only: the same bytes as a worker's
    in-process quantisation, made by ``python -m faceforge.building.networks.embedding_quantization``."""
    graph = embedding_onnx_path(settings.weights_dir)
    made_here = int8_onnx_path(settings.weights_dir, graph, quantize=quantize_embedding_graph)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / graph.name).hardlink_to(graph)
    made_by_child = int8_onnx_path(weights, weights / graph.name)
    assert made_by_child.name == made_here.name
    assert made_by_child.read_bytes() == made_here.read_bytes()


def test_the_quantiser_command_says_how_to_use_it() -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "faceforge.building.networks.embedding_quantization", "only-one"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 2 and "usage:" in done.stderr and "fit FOLDER" in done.stderr


def _child_running(parent: int, module: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and module.encode() in command:
            return int(entry.name)
    return None


def test_a_quantising_child_stops_when_its_parent_is_killed(settings: Settings, tmp_path: Path) -> None:
    """A server killed outright (SIGKILL, the OOM killer) left the child quantising for it working for
    nobody, for as long as a quantisation takes, beside the server that replaced it and quantised the
    same again. The child stops as soon as it sees it, and leaves no file behind, whole or partial."""
    import signal
    import subprocess
    import sys

    from tests.api.fixtures import wait_for

    graph = embedding_onnx_path(settings.weights_dir)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / graph.name).hardlink_to(graph)
    script = (
        "import sys; from pathlib import Path; "
        "from faceforge.serving.vision.embedder import int8_onnx_path; "
        "int8_onnx_path(Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, str(weights), str(weights / graph.name)])
    module = "faceforge.building.networks.embedding_quantization"
    try:
        child = wait_for(lambda: _child_running(parent.pid, module), timeout=60, what="the quantising child")
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    # The parent is gone before the child has imported what it quantises with, so a child that stops
    # does so before quantising; one that carries on writes the int8 graph. The wait covers the
    # child's start on a loaded machine and its fallback exit (``CLEAN_UP_SECONDS``).
    wait_for(lambda: process_state(child) in ("", "Z"), timeout=120, what="the orphaned child to stop")
    left = sorted(path.name for path in weights.iterdir() if not path.name.endswith(".lock"))
    assert left == [graph.name]  # the parent's lock file stays, as every lock file does
