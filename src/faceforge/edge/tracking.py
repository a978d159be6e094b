"""Faces followed across frames, and one decision per track.

**Tracking.** Each frame's boxes are matched to the open tracks greedily by intersection over union
(best pair first, at least ``MATCH_IOU``); an unmatched box opens a track; a track not seen for
``MAX_MISSED`` frames closes.

Overlap alone cannot tell that someone else stepped into the place a person just left (a door, a
queue at a desk): that face would inherit the person's decision. So a track keeps the embeddings of
its latest samples (``references``, up to ``REFERENCES``) and a new sample must agree with one of them
(``SAME_FACE_COSINE``). Two enrolled people can agree that well (one pair of different people in 50
does): a sample that agrees but that the head names as another enrolled person than the track's own
``SAMPLES`` do (as surely as they name theirs, or more surely than not) is unlike it too.
``DOUBTS`` samples in a row unlike the track end it (decided from what it saw) and open a new one:
one odd frame (a head turned away, motion blur) is not a new person.
A decided track is not sampled every frame, only when it is seen again after a gap, every
``RECHECK_FRAMES`` frames, and on the frame after a doubt.

**Deciding.** A track is decided once, from the head's probabilities (``unknown`` last) of its first
``SAMPLES`` frames, or of fewer when it closes before: ``decide`` with ``RULE``. The rules
(``Rule``), each a person or a stranger when the ``unknown`` output wins (the calibrated threshold
is inside the head: a track that never reaches it is a stranger):

- ``MEAN_PROBABILITY``: the argmax of the frames' mean probabilities;
- ``MEAN_SCORE``: the mean over frames of each person's decision score, ``log p_i - log p_unknown``
  (the head is ``softmax(scale * [cosine_i - margin_i..., threshold])``, so this is
  ``scale * (cosine_i - margin_i - threshold)``); the best person if their mean is above 0 (above
  the threshold), else a stranger;
- ``MAJORITY``: each frame's own decision is a vote; a person needs more than half of the votes.

The reported probability is the winner's mean probability over the frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from faceforge.core.faces import Box

MATCH_IOU = 0.3
MAX_MISSED = 5
# Two photos of one person fall below this cosine one time in 1,000 (different photos, days apart:
# 1,541 same-person pairs of 80 lfw_dev people, int8 server graph; 0.1 % quantile 0.790, 1 % 0.811),
# while 98 % of different people's pairs do (their 95th percentile is 0.771, 99th 0.804). Frames of
# one person a few frames apart agree far better than different photos.
SAME_FACE_COSINE = 0.79
# A decided track's face is checked again this often (frames), so that a swap without a gap (one face
# passing in front of another) is found within as many frames as a track outlives its face.
RECHECK_FRAMES = MAX_MISSED
REFERENCES = 8  # the latest agreeing samples' embeddings a new sample is compared with
DOUBTS = 2  # samples in a row unlike every reference that make another person
MORE_LIKELY_THAN_NOT = 0.5  # a sample named another person above this is unlike the track (``Track``)
FloatArray = npt.NDArray[np.float32]


class Rule(StrEnum):
    """How a track's frames combine into one decision (module docstring)."""

    MEAN_PROBABILITY = "mean_probability"
    MEAN_SCORE = "mean_score"
    MAJORITY = "majority"


# Chosen by ``bench.watch_tracks`` (lfw_dev: 201 people enrolled from 5 photos each; 240 sequences
# of 5 other photos of 48 of them, 500 strangers' photos with jitter; TFLite int8, MTCNN), known
# accepted / strangers rejected: single photo 0.971 / 0.976; mean probability over 2, 3, 5 frames
# 0.988 / 0.976, 1.000 / 0.976, 1.000 / 0.978; mean score 0.963 / 0.976, 0.967 / 0.976,
# 1.000 / 0.978; majority 0.942 / 0.978, 1.000 / 0.976, 1.000 / 0.976. Nothing named a known person
# wrongly. 3 frames of mean probability are the fewest that accept every known sequence with strangers
# rejected as single photos are; 5 frames reject one stranger of 500 more (noise) for a later decision.
RULE = Rule.MEAN_PROBABILITY
SAMPLES = 3


def decide(samples: Sequence[FloatArray], rule: Rule = RULE) -> tuple[int, float]:
    """One decision from one or more frames' probabilities (each ``(people + 1,)``, ``unknown`` last).

    Returns the winning output's index (``len(samples[0]) - 1``: a stranger) and its mean probability.
    """
    if not samples:
        raise ValueError("a decision needs at least one frame")
    stacked = np.stack(samples).astype(np.float64)
    unknown = stacked.shape[1] - 1
    if rule is Rule.MEAN_PROBABILITY:
        best = int(np.argmax(stacked.mean(axis=0)))
    elif rule is Rule.MEAN_SCORE:
        logs = np.log(np.maximum(stacked, np.finfo(np.float64).tiny))
        scores = (logs[:, :unknown] - logs[:, unknown:]).mean(axis=0)
        best = int(np.argmax(scores)) if unknown else unknown
        best = best if best < unknown and scores[best] > 0 else unknown
    else:
        votes = np.bincount(np.argmax(stacked, axis=1), minlength=unknown + 1)
        best = int(np.argmax(votes[:unknown])) if unknown else unknown
        best = best if best < unknown and 2 * votes[best] > len(samples) else unknown
    return best, float(stacked[:, best].mean())


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
    samples: list[FloatArray] = field(default_factory=list)
    decided: bool = False
    references: list[FloatArray] = field(default_factory=list)  # its latest agreeing samples' embeddings
    doubts: int = 0  # samples in a row that agreed with none of them
    checked_frame: int = -1  # the frame of its latest sample
    person_id: int | None = None  # whom its decision named (None: undecided, or a stranger)
    resumed: bool = False  # matched in this frame after frames without it

    @property
    def ready(self) -> bool:
        return not self.decided and len(self.samples) >= SAMPLES

    def wants_sample(self, frame: int) -> bool:
        """Every frame until decided; then after a gap, every ``RECHECK_FRAMES`` frames and while in doubt."""
        return (
            not self.decided
            or self.resumed
            or self.doubts > 0
            or frame - self.checked_frame >= RECHECK_FRAMES
        )

    def someone_else(
        self,
        embedding: FloatArray,
        frame: int,
        probabilities: FloatArray | None = None,
        version: int | None = None,
        named_person: int | None = None,
    ) -> bool:
        """Take a sample's embedding (and the head's ``probabilities`` for it, from ``version``, and
        the id of the person they name, None for a stranger); whether it makes ``DOUBTS`` in a row
        unlike the track (it is then someone else's). An agreeing one becomes a reference."""
        self.checked_frame = frame
        unit = embedding / (float(np.linalg.norm(embedding)) or 1.0)
        unlike = bool(self.references) and (
            max(float(np.dot(r, unit)) for r in self.references) < SAME_FACE_COSINE
            or (probabilities is not None and self._names_another(probabilities, version, named_person))
        )
        if unlike:
            self.doubts += 1
            return self.doubts >= DOUBTS
        self.doubts = 0
        self.references = [*self.references[-(REFERENCES - 1) :], unit]
        return False

    def _names_another(
        self, probabilities: FloatArray, version: int | None, named_person: int | None
    ) -> bool:
        """Whether the head names this sample as an enrolled person other than the one the track's
        samples name, and either at least as surely as they name theirs or more surely than not
        (above one half: more likely theirs than the track's person's, a stranger's and everyone
        else's together). The probabilities saturate: a track at 0.99999 kept a newcomer the head
        named at 0.995 (a new-user tester's Colin Powell, then Tony Blair in his place). A sample
        named another only a little more surely than the track's person (a head turned toward a
        look-alike, 0.45 against 0.3) is no doubt. Only once the track has its ``SAMPLES`` (before,
        one misnamed first frame would be all it knows), and not for a track of a stranger.

        A sample of another version than the track's samples (a new version arrived while the face
        was in view) has other outputs: the people are compared by id, once the track is decided
        (a tester saw swaps go unnoticed after every model update)."""
        if len(self.samples) < SAMPLES:
            return False
        unknown = len(probabilities) - 1
        named = int(np.argmax(probabilities))
        if named == unknown:
            return False
        if version != self.version:
            return (
                self.person_id is not None
                and named_person is not None
                and named_person != self.person_id
                and float(probabilities[named]) >= MORE_LIKELY_THAN_NOT
            )
        own, sureness = decide(self.samples)
        if named == own or own == unknown:
            return False
        return float(probabilities[named]) >= min(sureness, MORE_LIKELY_THAN_NOT)

    def add(self, probabilities: FloatArray, version: int) -> None:
        if version != self.version:  # a new version has other outputs: start again
            self.samples, self.version = [], version
        self.samples.append(probabilities)


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
                track = self._open(box, frame)
            track.resumed = frame - track.last_frame > 1
            track.box, track.last_frame = box, frame
            result.append(track)
        return result

    def _open(self, box: Box, frame: int) -> Track:
        track = Track(self._next_id, box, frame)
        self._next_id += 1
        self.tracks.append(track)
        return track

    def replace(self, track: Track, frame: int) -> Track:
        """End ``track`` (someone else's face is in its place) and open a track there instead."""
        self.tracks.remove(track)
        return self._open(track.box, frame)

    def close(self, frame: int | None = None) -> list[Track]:
        """Remove and return the tracks unseen for ``MAX_MISSED`` frames (all of them: ``None``)."""
        gone = [t for t in self.tracks if frame is None or frame - t.last_frame > MAX_MISSED]
        self.tracks = [t for t in self.tracks if t not in gone]
        return gone
