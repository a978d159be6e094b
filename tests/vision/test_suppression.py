"""MTCNN's non-maximum suppression: the pairwise form keeps exactly the boxes that one box against
the rest keeps, on real candidates and on random ones with ties, duplicates and degenerate boxes
(no area: overlap undefined)."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.serving.vision import mtcnn
from faceforge.serving.vision.mtcnn import _nms, _nms_one_at_a_time
from faceforge.serving.vision.pipeline import FacePipeline
from tests.conftest import LFW10


def _random_boxes(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    corners = rng.uniform(0, 200, (count, 2)).astype(np.float32)
    sides = rng.choice([-1.0, 0.0, 1.0, 12.0, 30.0, 80.0], (count, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + sides], axis=1)
    boxes[count // 2 :: 7] = boxes[0]  # identical boxes
    scores = rng.choice([0.5, 0.7, 0.9, 0.99], count).astype(np.float32)  # many ties
    scores[::3] = rng.uniform(0.6, 1.0, len(scores[::3])).astype(np.float32)
    return boxes, scores


@pytest.mark.parametrize("by_min", [False, True])
@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.7])
def test_pairwise_and_one_at_a_time_keep_the_same_boxes(by_min: bool, threshold: float) -> None:
    rng = np.random.default_rng(7)
    for count in (1, 2, 5, 40, 300):
        for _ in range(20):
            boxes, scores = _random_boxes(rng, count)
            assert _nms(boxes, scores, threshold, by_min=by_min) == _nms_one_at_a_time(
                boxes, scores, threshold, by_min=by_min
            )


def test_many_boxes_are_suppressed_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    boxes, scores = _random_boxes(rng, mtcnn.PAIRWISE_NMS_LIMIT + 1)
    expected = _nms_one_at_a_time(boxes, scores, 0.5)
    calls: list[int] = []

    def counted(
        boxes: np.ndarray, scores: np.ndarray, threshold: float, *, by_min: bool = False
    ) -> list[int]:
        calls.append(len(boxes))
        return _nms_one_at_a_time(boxes, scores, threshold, by_min=by_min)

    monkeypatch.setattr(mtcnn, "_nms_one_at_a_time", counted)
    assert _nms(boxes, scores, 0.5) == expected
    assert calls == [len(boxes)], "no pairwise matrix of this size"
    assert _nms(boxes[:100], scores[:100], 0.5) == _nms_one_at_a_time(boxes[:100], scores[:100], 0.5)
    assert calls == [len(boxes)]


def test_a_photos_own_candidates_are_kept_alike(
    pipeline: FacePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[np.ndarray, np.ndarray, float, bool]] = []

    def recording(
        boxes: np.ndarray, scores: np.ndarray, threshold: float, *, by_min: bool = False
    ) -> list[int]:
        seen.append((boxes.copy(), scores.copy(), threshold, by_min))
        return _nms(boxes, scores, threshold, by_min=by_min)

    monkeypatch.setattr(mtcnn, "_nms", recording)
    for photo in sorted((LFW10 / "Tony_Blair").glob("*.jpg"))[:3]:
        pipeline.analyze(photo.read_bytes(), single_face=False)
    assert len(seen) > 10 and max(len(boxes) for boxes, *_ in seen) > 30
    for boxes, scores, threshold, by_min in seen:
        assert _nms(boxes, scores, threshold, by_min=by_min) == _nms_one_at_a_time(
            boxes, scores, threshold, by_min=by_min
        )
