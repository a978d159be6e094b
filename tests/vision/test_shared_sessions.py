"""One ONNX Runtime session per graph file and options in a process, shared by whoever loads it."""

from __future__ import annotations

import gc
import shutil
import weakref
from pathlib import Path

import numpy as np

from faceforge.core.config import Settings
from faceforge.serving.vision.embedder import check_inputs, embedding_onnx_path, graph_feeds
from faceforge.serving.vision.mtcnn import cached_graphs
from faceforge.serving.vision.runtime import KEEP_RECENT_SESSIONS, OnnxSession


def test_a_graph_loaded_twice_runs_in_one_session(settings: Settings, tmp_path: Path) -> None:
    graph = embedding_onnx_path(settings.weights_dir)
    first, second = OnnxSession(graph, threads=1), OnnxSession(graph, threads=1)
    assert first._session is second._session  # a second pipeline's load costs nothing
    assert OnnxSession(graph, threads=2)._session is not first._session  # other options, other session
    feeds = graph_feeds(check_inputs(3, 2))
    np.testing.assert_array_equal(first.run(feeds)[0], second.run(feeds)[0])

    # A copy is another file, and a file replaced by another graph is loaded afresh.
    copy = tmp_path / graph.name
    shutil.copyfile(graph, copy)
    copied = OnnxSession(copy, threads=1)
    assert copied._session is not first._session
    replacement = tmp_path / "replacement.onnx"
    shutil.copyfile(graph, replacement)
    replacement.replace(copy)
    assert OnnxSession(copy, threads=1)._session is not copied._session


def test_sessions_nobody_holds_are_let_go(settings: Settings, tmp_path: Path) -> None:
    """Only the most recent few are kept beyond their holders: a process does not accumulate them."""
    graph = embedding_onnx_path(settings.weights_dir)
    copy = tmp_path / "once.onnx"
    shutil.copyfile(graph, copy)
    session = OnnxSession(copy, threads=1)._session
    held = weakref.ref(session)
    del session
    others = tmp_path / "others"
    others.mkdir()
    small = cached_graphs(settings.weights_dir) / "rnet.onnx"  # a small graph, started quickly
    for index in range(KEEP_RECENT_SESSIONS):
        target = others / f"{index}.onnx"
        shutil.copyfile(small, target)
        OnnxSession(target, threads=1)
    gc.collect()
    assert held() is None
