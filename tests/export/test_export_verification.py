"""Export verification catches a wrong head: a model whose people are shuffled must fail the version,
even when every probability it gives on the probe images is tiny (a fitted head's large scale)."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pytest

from faceforge.building.export import version_exports
from faceforge.building.export.onnx_models import head_affine, head_model
from faceforge.building.export.version_exports import VersionExporter, head_probes
from faceforge.building.head_fitting import fit_head
from faceforge.core.config import Settings
from faceforge.core.errors import ExportError
from faceforge.core.formats import ExportFormat
from faceforge.core.model.head import RecognitionHead

Embeddings = tuple[npt.NDArray[np.float32], list[str], list[object]]


@pytest.fixture(scope="module")
def head(lfw10_embeddings: Embeddings) -> RecognitionHead:
    embeddings, labels, _ = lfw10_embeddings
    return fit_head(embeddings, labels)


def _shuffled(head: RecognitionHead) -> RecognitionHead:
    """The same head with each label's prototype moved to the next label."""
    return dataclasses.replace(head, prototypes=np.roll(head.prototypes, 1, axis=0))


def test_a_right_head_passes_on_prototypes_and_real_faces(
    head: RecognitionHead, lfw10_embeddings: Embeddings, settings: Settings
) -> None:
    embeddings = lfw10_embeddings[0]
    probes = head_probes(head, embeddings)
    assert len(probes) == len(head.labels) + len(embeddings)
    # Each prototype is its own person's best match, surely: that is what makes a shuffle visible.
    mine = head.probabilities(head.prototypes)
    assert (mine.argmax(axis=1) == np.arange(len(head.labels))).all()
    exports = VersionExporter(settings.weights_dir, (ExportFormat.ONNX, ExportFormat.TFLITE)).export(
        head, samples=embeddings
    )
    assert {"head.onnx", "model.onnx", "head.tflite", "model.tflite"} <= set(exports.files)


def test_a_shuffled_onnx_head_fails_verification(
    head: RecognitionHead, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fused model on the probe images gives every person a negligible probability...
    noise = head.probabilities(VersionExporter(settings.weights_dir).onnx.probe_embeddings())
    assert noise[:, :-1].max() < 1e-4
    monkeypatch.setattr(
        version_exports, "head_model", lambda head, **graph: head_model(_shuffled(head), **graph)
    )
    with pytest.raises(ExportError, match=r"(head|model)\.onnx"):  # ...and yet the shuffle is caught
        VersionExporter(settings.weights_dir, (ExportFormat.ONNX,)).export(head)


def test_a_shuffled_tflite_head_fails_verification(
    head: RecognitionHead, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(version_exports, "head_affine", lambda head: head_affine(_shuffled(head)))
    with pytest.raises(ExportError, match="tflite"):
        VersionExporter(settings.weights_dir, (ExportFormat.TFLITE,)).export(head)
