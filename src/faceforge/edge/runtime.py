"""The on-device files, run: refiner, backbone and head of one cached version, in TFLite or ONNX.

Shapes as the version's manifest states them: TFLite files take batch 1, NHWC, float32 RGB 0-255,
through their ``serving_default`` signature; ONNX files take a batch, NCHW. The refiner answers
``face_probability`` ``(N,)``, ``box_offsets`` ``(N, 4)``, ``landmarks`` ``(N, 10)``; the backbone
``embedding`` ``(N, 640)`` from ``face`` (160 x 160) and ``chip`` (150 x 150); the head
``probabilities`` ``(N, people + 1)``, ``unknown`` last, from ``embedding``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from faceforge.core.native_logs import native_chatter_filtered
from faceforge.edge.choices import ModelChoice
from faceforge.edge.models import CachedVersion
from faceforge.serving.vision.face_input import FaceInputs

FloatArray = npt.NDArray[np.float32]
SIGNATURE = "serving_default"
REFINER_OUTPUTS = ("face_probability", "box_offsets", "landmarks")


class Graph(Protocol):
    """One model file: named NHWC float32 inputs (a batch) -> named outputs (the same batch)."""

    def __call__(self, inputs: dict[str, FloatArray]) -> dict[str, FloatArray]: ...


class TfliteGraph:
    """A ``.tflite`` file on ai-edge-litert, one row at a time (the files take batch 1)."""

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        # LiteRT says "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on stderr at each
        # interpreter's first run: that run is made here, on zeros, with the line left out.
        with native_chatter_filtered():
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self._runner = interpreter.get_signature_runner(SIGNATURE)
            inputs = self._runner.get_input_details()
            self._runner(**{name: np.zeros(d["shape"], d["dtype"]) for name, d in inputs.items()})

    def __call__(self, inputs: dict[str, FloatArray]) -> dict[str, FloatArray]:
        count = len(next(iter(inputs.values())))
        rows = [
            self._runner(**{name: value[i : i + 1] for name, value in inputs.items()}) for i in range(count)
        ]
        return {name: np.concatenate([np.asarray(row[name], np.float32) for row in rows]) for name in rows[0]}


class OnnxGraph:
    """An ``.onnx`` file on ONNX Runtime (one thread pool of ``threads``); NHWC in, as TFLite."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session: Any = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._outputs = [output.name for output in self._session.get_outputs()]
        self._images = {i.name for i in self._session.get_inputs() if len(i.shape) == 4}

    def __call__(self, inputs: dict[str, FloatArray]) -> dict[str, FloatArray]:
        feed = {
            name: np.ascontiguousarray(value.transpose(0, 3, 1, 2)) if name in self._images else value
            for name, value in inputs.items()
        }
        answers = self._session.run(self._outputs, feed)
        return dict(zip(self._outputs, answers, strict=True))


class EdgeModel:
    """A cached version, loaded: the app-side refiner and the split model, as the phone runs them."""

    def __init__(self, version: CachedVersion, *, threads: int = 1) -> None:
        graph = OnnxGraph if version.choice is ModelChoice.ONNX else TfliteGraph
        self.version = version
        self._refiner: Graph = graph(version.refiner, threads)
        self._backbone: Graph = graph(version.backbone, threads)
        self._head: Graph = graph(version.head, threads)

    def without_people(self) -> EdgeModel:
        """This model naming nobody, on the same loaded graphs (the server has no version any more)."""
        model = copy.copy(self)
        model.version = self.version.without_people()
        return model

    def describe_patches(self, patches: npt.NDArray[np.uint8]) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The refiner on ``(N, 48, 48, 3)`` uint8 RGB patches (``vision.refine.PatchDescriber``)."""
        answers = self._refiner({"patch": patches.astype(np.float32)})
        probability, offsets, points = (answers[name] for name in REFINER_OUTPUTS)
        return probability.reshape(-1), offsets.reshape(-1, 4), points.reshape(-1, 10)

    def embed(self, inputs: FaceInputs) -> FloatArray:
        """``(N, 640)`` unit embeddings of the ``face`` crops and ``chip`` chips."""
        answers = self._backbone(
            {"face": inputs.crops.astype(np.float32), "chip": inputs.chips.astype(np.float32)}
        )
        return answers["embedding"]

    def classify(self, embeddings: FloatArray) -> FloatArray:
        """``(N, people + 1)`` probabilities, ``unknown`` last."""
        return self._head({"embedding": embeddings.astype(np.float32)})["probabilities"]
