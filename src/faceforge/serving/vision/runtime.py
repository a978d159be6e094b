"""A small seam between model code and the engine that runs a graph (here ONNX Runtime)."""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort


class InferenceSession(Protocol):
    """Runs a graph: named float32 inputs in, outputs in the graph's order out."""

    def run(self, inputs: dict[str, npt.NDArray[np.float32]]) -> list[npt.NDArray[np.float32]]: ...


# ONNX Runtime multiplies uint8 activations by int8 weights with an x86 instruction (VPMADDUBSW) whose
# 16-bit sums of two products saturate on CPUs without VNNI: there the int8 embedding graph drifted to
# cosine 0.9926 from what it computes elsewhere (AMD EPYC with AVX2 only, measured), so such a machine
# fell back to the float graph. This setting makes ONNX Runtime convert the weights to uint8 and use
# its exact u8u8 kernels, on every CPU (it does not detect saturation). They cost twice the fast ones
# even where VNNI makes those exact (measured on an AMD EPYC with AVX-512 VNNI), so the embedder
# measures which it needs (``FaceEmbedder``) rather than asking for them everywhere.
EXACT_INT8_PRODUCTS = ("session.x64quantprecision", "1")


class OnnxSession:
    """ONNX Runtime on the CPU with an explicit thread budget (we parallelise across photos ourselves)."""

    def __init__(self, graph: Path | bytes, *, threads: int = 1, exact_int8: bool = False) -> None:
        """``graph``: a file or its bytes. ``exact_int8``: a quantised graph's integer products computed
        exactly on every CPU (``EXACT_INT8_PRODUCTS``); ONNX Runtime then cannot load a graph whose
        convolutions share a quantised weight (the whole int8 embedding graph; its parts can)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if exact_int8:
            options.add_session_config_entry(*EXACT_INT8_PRODUCTS)
        if threads > 1:
            # Idle intra-op threads spin by default, taking cores from concurrent requests (measured
            # here: 3 ms slower alone without spinning, and no core burnt while others wait).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

        def start(source: str | bytes) -> ort.InferenceSession:
            return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

        if isinstance(graph, bytes):
            self._session = start(graph)
        else:
            self._session = _shared_session(graph, (threads, exact_int8), lambda: start(str(graph)))
        self.input_names = [node.name for node in self._session.get_inputs()]
        self.output_names = [node.name for node in self._session.get_outputs()]

    def run(self, inputs: dict[str, npt.NDArray[np.float32]]) -> list[npt.NDArray[np.float32]]:
        outputs = self._session.run(self.output_names, inputs)
        return [np.asarray(output, dtype=np.float32) for output in outputs]

    def run_raw(self, inputs: Mapping[str, npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        """Outputs as the graph gives them (a quantised tensor stays uint8), inputs of any type."""
        return list(self._session.run(self.output_names, dict(inputs)))


# Sessions of one graph file with the same options are shared within a process while anything holds
# them, and the most recent few are kept a little longer: ONNX Runtime sessions may run from several
# threads at once, and starting one costs 0.1-0.7 s of a core (the float embedding graph: 300 MB held
# once). A process that starts its services again (a worker its supervisor restarts, the test suite's
# hundreds of apps) finds its networks loaded. A file replaced or rewritten is another key.
KEEP_RECENT_SESSIONS = 12
_shared: weakref.WeakValueDictionary[tuple[Any, ...], ort.InferenceSession] = weakref.WeakValueDictionary()
_recent: deque[ort.InferenceSession] = deque(maxlen=KEEP_RECENT_SESSIONS)
_shared_lock = threading.Lock()


def _shared_session(
    graph: Path, options: tuple[Any, ...], start: Callable[[], ort.InferenceSession]
) -> ort.InferenceSession:
    found = graph.stat()
    key = (str(graph.resolve()), found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, *options)
    with _shared_lock:
        session = _shared.get(key)
    if session is None:
        started = start()  # outside the lock: other graphs start meanwhile
        with _shared_lock:
            session = _shared.setdefault(key, started)
    with _shared_lock:
        if not any(kept is session for kept in _recent):
            _recent.append(session)
    return session
