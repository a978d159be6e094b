"""Faces followed across frames, and one decision per track.

**Tracking.** Each frame's boxes are matched to the open tracks greedily by intersection over union
(best pair first, at least ``MATCH_IOU``); an unmatched box opens a track; a track not seen for
``MAX_MISSED`` frames closes.

**Deciding.** The head's probabilities (``unknown`` last) of up to ``SAMPLES`` frames of a track are
averaged, and the track is decided once, by that mean's argmax: a person, or a stranger when the
``unknown`` output wins (the calibrated threshold is inside the head: a track that never reaches it
is a stranger). A track is decided when it has ``SAMPLES`` frames, or when it closes with fewer.
Averaging probabilities rather than embeddings keeps each frame's decision on the head's own,
calibrated, scale: a stranger is named only if the frames agree on one person more than on
``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from faceforge.core.faces import Box

MATCH_IOU = 0.3
MAX_MISSED = 5
SAMPLES = 3


def iou(a: Box, b: Box) -> float:
    width = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    height = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / (a.width * a.height + b.width * b.height - inter)


@dataclass(slots=True)
class Track:
    id: int
    box: Box
    last_frame: int
    face: Box | None = None  # the refined box of its latest sample (what a decision reports)
    version: int | None = None  # the model version its samples came from
    samples: list[npt.NDArray[np.float32]] = field(default_factory=list)
    decided: bool = False

    @property
    def ready(self) -> bool:
        return not self.decided and len(self.samples) >= SAMPLES

    def add(self, probabilities: npt.NDArray[np.float32], version: int) -> None:
        if version != self.version:  # a new version has other outputs: start again
            self.samples, self.version = [], version
        self.samples.append(probabilities)

    def mean(self) -> npt.NDArray[np.float32]:
        result: npt.NDArray[np.float32] = np.mean(self.samples, axis=0, dtype=np.float32)
        return result


class Tracker:
    def __init__(self) -> None:
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, frame: int, boxes: list[Box]) -> list[Track]:
        """Match this frame's ``boxes``; returns the track of each box, in the boxes' order."""
        pairs = sorted(
            (
                (iou(track.box, box), t, b)
                for t, track in enumerate(self.tracks)
                for b, box in enumerate(boxes)
            ),
            reverse=True,
        )
        matched: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, t, b in pairs:
            if overlap < MATCH_IOU:
                break
            if t in used or b in matched:
                continue
            used.add(t)
            matched[b] = self.tracks[t]
        result = []
        for b, box in enumerate(boxes):
            track = matched.get(b)
            if track is None:
                track = Track(self._next_id, box, frame)
                self._next_id += 1
                self.tracks.append(track)
            track.box, track.last_frame = box, frame
            result.append(track)
        return result

    def close(self, frame: int | None = None) -> list[Track]:
        """Remove and return the tracks unseen for ``MAX_MISSED`` frames (all of them: ``None``)."""
        gone = [t for t in self.tracks if frame is None or frame - t.last_frame > MAX_MISSED]
        self.tracks = [t for t in self.tracks if t not in gone]
        return gone
