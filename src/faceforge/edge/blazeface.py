"""BlazeFace, the single-shot face detector behind MediaPipe (and the family ML Kit uses on Android),
as a second detector family for ``faceforge eval --app-detector blazeface``.

The model is ``face_detection_short_range.tflite`` from the ``mediapipe`` wheel (read from disk; the
package is never imported) and runs on ai-edge-litert. What this module does around it follows
MediaPipe's published face-detection graph:

- input: the photo padded to a square with black (centred), resized to 128 x 128, RGB scaled to
  ``[-1, 1]``;
- 896 SSD anchors on a 16 x 16 grid (stride 8, two anchors per cell) and an 8 x 8 grid (stride 16,
  six per cell), fixed size, centred in their cells;
- each anchor regresses 16 numbers in input pixels: box centre offset, width and height, then six
  key points; the score is ``sigmoid(clip(logit, -100, 100))`` and faces need 0.5;
- overlapping detections (IoU above 0.3) are merged by a score-weighted average (MediaPipe's
  "weighted" non-maximum suppression).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from faceforge.core.faces import Box
from faceforge.core.native_logs import native_chatter_filtered
from faceforge.core.package_files import package_file

MODEL_FILE = "modules/face_detection/face_detection_short_range.tflite"
INPUT_SIZE = 128
MIN_SCORE = 0.5
MERGE_IOU = 0.3
SCORE_CLIP = 100.0


def model_path() -> Path:
    return package_file("mediapipe", MODEL_FILE, pip_name="mediapipe==0.10.21")


def anchors() -> npt.NDArray[np.float32]:
    """``(896, 2)`` anchor centres as fractions of the input: stride 8 (2 per cell), stride 16 (6)."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = INPUT_SIZE // stride
        for y in range(cells):
            for x in range(cells):
                centres += [((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell
    return np.asarray(centres, np.float32)


def _iou(box: npt.NDArray[np.float32], others: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """IoU of one ``[x1, y1, x2, y2]`` box with each row of ``others``."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    result: npt.NDArray[np.float32] = inter / np.maximum(area + areas - inter, 1e-12)
    return result


class BlazeFaceDetector:
    """Face boxes in pixels of the photo, as MediaPipe's short-range face detector finds them."""

    def __init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        # Its first run (LiteRT's "Created ... XNNPACK delegate" line on stderr) is made here, quietly.
        with native_chatter_filtered():
            self._interpreter = Interpreter(model_path=str(model_path()), num_threads=1)
            self._interpreter.allocate_tensors()
            (self._input,) = self._interpreter.get_input_details()
            self._interpreter.set_tensor(self._input["index"], np.zeros(self._input["shape"], np.float32))
            self._interpreter.invoke()
        outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        self._regressors, self._scores = outputs["regressors"], outputs["classificators"]
        self._anchors = anchors()

    def detect(self, image: npt.NDArray[np.uint8]) -> list[Box]:
        height, width = image.shape[:2]
        side = max(height, width)
        square = Image.new("RGB", (side, side))
        left, top = (side - width) // 2, (side - height) // 2
        square.paste(Image.fromarray(image), (left, top))
        pixels = np.asarray(square.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR), np.float32)
        self._interpreter.set_tensor(self._input["index"], (pixels / 127.5 - 1.0)[None])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._regressors)[0]
        logits = self._interpreter.get_tensor(self._scores)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
        keep = scores >= MIN_SCORE
        if not keep.any():
            return []
        centre = raw[keep, :2] / INPUT_SIZE + self._anchors[keep]
        size = raw[keep, 2:4] / INPUT_SIZE
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        merged = _weighted_suppression(boxes, scores[keep])
        scale = side  # fractions of the padded square -> photo pixels
        return [
            Box(
                float(x1 * scale - left),
                float(y1 * scale - top),
                float((x2 - x1) * scale),
                float((y2 - y1) * scale),
            )
            for x1, y1, x2, y2 in merged
        ]


def _weighted_suppression(
    boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32]
) -> list[npt.NDArray[np.float32]]:
    """Group detections around the best remaining one (IoU > ``MERGE_IOU``); each group becomes the
    score-weighted mean of its boxes."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    remaining = np.ones(len(boxes), bool)
    merged = []
    for index in range(len(boxes)):
        if not remaining[index]:
            continue
        group = remaining & (_iou(boxes[index], boxes) > MERGE_IOU)
        group[index] = True
        weights = scores[group][:, None]
        merged.append((boxes[group] * weights).sum(axis=0) / weights.sum())
        remaining &= ~group
    return merged
