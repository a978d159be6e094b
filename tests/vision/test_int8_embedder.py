"""The int8 embedding graph is held to the float one (the reference) on real faces, and a process runs it
only where this machine computes it as the fitting machine did."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
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
    SEVEN_BIT_SUFFIX,
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
def reference(settings: Settings) -> FaceEmbedder:
    embedder = FaceEmbedder(settings.weights_dir, precision="float")
    embedder.load()
    assert embedder.precision == "float"
    return embedder


def _int8_graph(settings: Settings, bits: int) -> Path:
    """The 8-bit graph, or its twin with 7-bit weights, as the session's cache holds them."""
    check = Int8Check.load(INT8_CHECK_FILE)
    variant = check if bits == 8 else check.seven_bit
    assert variant is not None
    return int8_onnx_path(settings.weights_dir, embedding_onnx_path(settings.weights_dir), check=variant)


def _embed(session: FlipPassSession, inputs: FaceInputs) -> np.ndarray:
    rows = [session.run(graph_feeds(inputs.rows(i, i + 16)))[0] for i in range(0, len(inputs), 16)]
    return unit_rows(np.concatenate(rows))


@pytest.fixture(scope="module")
def real_faces(pipeline: FacePipeline, reference: FaceEmbedder) -> tuple[FaceInputs, list[str], np.ndarray]:
    """Real faces, their folders' names, and their float embeddings (the reference)."""
    inputs, names = _faces(pipeline, [LFW10, FACES / "unknown_singles", FACES / "azure_face_samples"])
    return inputs, names, reference.embed(inputs)


@pytest.mark.parametrize("bits", [8, 7])
def test_int8_embeddings_and_decisions_hold_to_the_float_graph(
    settings: Settings, real_faces: tuple[FaceInputs, list[str], np.ndarray], bits: int
) -> None:
    """Both int8 graphs, each with kernels that compute its integer products exactly on any CPU (the
    8-bit graph's exact ones; the 7-bit twin's fast ones are exact everywhere), so that what is held
    is the file, whichever of the two this machine runs."""
    graph = _int8_graph(settings, bits)
    int8 = FlipPassSession(graph, side_by_side=False, exact_int8=bits == 8)
    inputs, names, exact = real_faces
    quantised = _embed(int8, inputs)
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
    assert sessions[0].graph == sessions[1].graph  # the 8-bit graph, or its 7-bit twin (AVX2 alone)
    whole = exact_int8_session(sessions[0].graph)
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


def test_the_kernels_that_run_are_the_fastest_that_compute_the_check(settings: Settings) -> None:
    """Where ONNX Runtime's fast 8-bit products are exact (VNNI) they run; where they saturate (AVX2
    alone) the twin with 7-bit weights runs on them. The exact kernels, which ran there before, cost
    twice the fast ones on a CPU with VNNI (one pass 10.9 → 21.5 ms) and 30 % more on one without
    (one face 27.9 → 21.2 ms with the twin, AMD EPYC with AVX2 alone)."""
    graph = _int8_graph(settings, 8)
    fast = int8_check_cosine(
        FlipPassSession(graph, side_by_side=False, exact_int8=False), Int8Check.load(INT8_CHECK_FILE)
    )
    embedder = FaceEmbedder(settings.weights_dir, threads=2)
    embedder.load()
    assert isinstance(embedder._onnx, FlipPassSession) and embedder.precision == "int8"
    assert not embedder._onnx.exact_int8
    assert embedder._onnx.seven_bit == (fast < FAST_KERNELS_COSINE), fast
    assert embedder._onnx.graph == (_int8_graph(settings, 7) if fast < FAST_KERNELS_COSINE else graph)
    assert embedder.graph == embedder._onnx.graph  # what readiness names
    assert embedder.check_cosine is not None and embedder.check_cosine >= FAST_KERNELS_COSINE


def test_the_seven_bit_twin_is_computed_exactly_by_the_fast_kernels_of_any_cpu(settings: Settings) -> None:
    """Its weights stay within 7 bits, where two uint8 x int8 products cannot saturate a 16-bit sum
    (255 x 64 x 2 < 32767), so its fast kernels reproduce the embeddings recorded with exact products;
    the 8-bit graph's weights use the whole range (which is why its fast kernels saturate)."""
    check = Int8Check.load(INT8_CHECK_FILE)
    assert check.seven_bit is not None and check.seven_bit.graph.endswith(f"{SEVEN_BIT_SUFFIX}.onnx")
    twin = _int8_graph(settings, 7)
    session = FlipPassSession(twin, side_by_side=False, exact_int8=False)
    assert int8_check_cosine(session, check.seven_bit) >= FAST_KERNELS_COSINE
    # The two records are two graphs' (a twin quantised like the 8-bit graph would match this one's).
    assert int8_check_cosine(session, check) < FAST_KERNELS_COSINE

    def weight_range(graph: Path) -> tuple[int, int]:
        values = [
            onnx.numpy_helper.to_array(tensor)
            for part in flip_part_paths(graph)
            for tensor in onnx.load(str(part)).graph.initializer
            if tensor.data_type == onnx.TensorProto.INT8 and tensor.dims
        ]
        return min(int(v.min()) for v in values), max(int(v.max()) for v in values)

    low, high = weight_range(twin)
    assert low >= -64 and high <= 64, (low, high)
    low, high = weight_range(_int8_graph(settings, 8))
    assert low < -64 or high > 64, (low, high)


def test_the_kernels_are_measured_once_per_machine_and_kept(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Which int8 kernels compute the check's embeddings depends only on the CPU, ONNX Runtime, the
    graphs and the check; measuring it built and ran the graph's parts twice on every start of a CPU
    without VNNI (1.1 s of each API process's 1.9 s load on an AMD EPYC with AVX2 alone)."""
    graph = embedding_onnx_path(settings.weights_dir)
    int8, twin = _int8_graph(settings, 8), _int8_graph(settings, 7)
    weights = tmp_path / "weights"
    weights.mkdir()
    for path in (graph, int8, *flip_part_paths(int8), twin, *flip_part_paths(twin)):
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
    assert record["fast"] == pytest.approx(fast, abs=1e-6) and record["exact"] is None
    assert (record["seven_bit"] is not None) == first._onnx.seven_bit == (fast < FAST_KERNELS_COSINE)

    # The next process follows the kept verdict and measures nothing: each verdict written there is
    # obeyed (so it is read, not measured again).
    def kernels(session: object) -> tuple[str, bool]:
        assert isinstance(session, FlipPassSession)
        return session.graph.name, session.exact_int8

    verdicts = [
        ({"fast": 1.0, "exact": None}, (int8.name, False), 1.0),
        ({"fast": 0.99, "exact": 1.0}, (int8.name, True), 1.0),
        ({"fast": 0.99, "exact": None, "seven_bit": 1.0}, (twin.name, False), 1.0),
        # None computes the check as recorded: the closest runs (the process then says so).
        ({"fast": 0.99, "exact": 0.995, "seven_bit": 0.9992}, (twin.name, False), 0.9992),
        ({"fast": 0.99, "exact": 0.9991, "seven_bit": 0.998}, (int8.name, True), 0.9991),
    ]
    for verdict, expected, cosine in verdicts:
        kept[0].write_text(json.dumps(verdict))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="faceforge.serving.vision.embedder"):
            second = FaceEmbedder(weights, threads=2, precision="int8")
            second.load()
        assert kernels(second._onnx) == expected, verdict
        assert "as measured on this machine before" in caplog.text and second.check_cosine == cosine

    # A verdict that cannot be read is measured again and replaced.
    kept[0].write_text("{not json")
    third = FaceEmbedder(weights, threads=2)
    third.load()
    assert kernels(third._onnx) == kernels(first._onnx)
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
    if change == "arithmetic":  # what a machine computing both graphs differently would meet
        for entry in (record, record["seven_bit"]):
            entry["embeddings"] = np.roll(np.asarray(entry["embeddings"]), 1, axis=0).tolist()
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


def test_the_quantiser_command_says_how_to_use_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    module = [sys.executable, "-m", "faceforge.building.networks.embedding_quantization"]
    for wrong in (["only-one"], ["checks", "extra"], ["fit"]):
        done = subprocess.run(module + wrong, capture_output=True, text=True, check=False, timeout=120)
        assert done.returncode == 2 and "usage:" in done.stderr and "fit FOLDER" in done.stderr, wrong
    # A float graph that is not there: one line saying so, no traceback.
    # Paths of this test's own: a machine-wide path may hold a real graph (a run that made one there).
    absent = tmp_path / "absent" / "facenet-dlib-w0.8-59211d92e7af558c.onnx"
    missing = [str(absent), str(tmp_path / "never-written.onnx")]
    done = subprocess.run(module + missing, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"cannot quantise {absent} ") and done.stderr.count("\n") == 1
    assert not (tmp_path / "never-written.onnx").exists()


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
