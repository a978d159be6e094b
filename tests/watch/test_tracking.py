"""``tracking.decide``: the rules on made-up probabilities (``unknown`` last), edge cases included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceforge.core.faces import Box
from faceforge.edge.agent import stranger_probability
from faceforge.edge.choices import ModelChoice
from faceforge.edge.models import CachedVersion, Person
from faceforge.edge.tracking import SAMPLES, Rule, Track, decide


def frame(*probabilities: float) -> np.ndarray:
    return np.asarray(probabilities, np.float32)


def check(frames: list[np.ndarray], rule: Rule, best: int, probability: float) -> None:
    decided, mean = decide(frames, rule)
    assert decided == best and mean == pytest.approx(probability, abs=1e-4), rule


def test_every_rule_on_one_frame_on_a_one_person_head_and_on_no_frame() -> None:
    for rule in Rule:
        check([frame(0.1, 0.7, 0.2)], rule, 1, 0.7)  # one frame: its own argmax
        check([frame(0.3, 0.1, 0.6)], rule, 2, 0.6)  # a stranger
        check([frame(0.8, 0.2), frame(0.7, 0.3)], rule, 0, 0.75)  # one person enrolled
        check([frame(0.2, 0.8), frame(0.3, 0.7)], rule, 1, 0.75)
        with pytest.raises(ValueError, match="at least one frame"):
            decide([], rule)


def test_the_rules_differ_where_they_should() -> None:
    split = [frame(0.6, 0.1, 0.3), frame(0.1, 0.2, 0.7)]  # one vote for person 0, one for unknown
    check(split, Rule.MAJORITY, 2, 0.5)  # a person needs more than half of the votes
    check([*split, frame(0.5, 0.1, 0.4)], Rule.MAJORITY, 0, 0.4)
    # log-odds against unknown: ln 9 = 2.2 twice and ln(1e-4 / 0.9999) = -9.2: a confident "unknown"
    # outweighs two fair "person 0" frames in the mean score, not in the mean probability (0.6).
    outvoted = [frame(0.9, 0.1), frame(0.9, 0.1), frame(0.0001, 0.9999)]
    assert [decide(outvoted, rule)[0] for rule in Rule] == [0, 1, 0]  # Rule's order
    # and the other way: one confident "person 0" (+9.2) against two fair "unknown" (-1.4 each)
    carried = [frame(0.9999, 0.0001), frame(0.2, 0.8), frame(0.2, 0.8)]
    assert [decide(carried, rule)[0] for rule in Rule] == [1, 0, 1]
    # a probability of 0 (float32 underflow) keeps the score finite
    check([frame(0.0, 0.6, 0.4), frame(0.0, 0.7, 0.3)], Rule.MEAN_SCORE, 1, 0.65)


def _sample(track: Track, frame: int, embedding: np.ndarray, probabilities: list[float]) -> bool:
    """One sample as the agent takes it: whether it ends the track; else its probabilities join the
    undecided track's samples."""
    head = np.array(probabilities, np.float32)
    if track.someone_else(embedding, frame, head, 1):
        return True
    if not track.doubts and len(track.samples) < SAMPLES:
        track.add(head, 1)
    return False


def test_the_head_splits_a_track_only_once_it_has_its_samples_and_only_as_surely() -> None:
    """One face throughout (the embeddings agree): a first frame the head misnames (B, then A, A) must
    not end the track on the next frames' doubt, where its one sample would have published B (a
    reviewer's simulation); once decided, a frame naming another person less surely than the track
    names its own is no doubt, two as surely are someone else."""
    face = np.ones(8, np.float32)
    a, b, unknown = [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]
    track = Track(1, Box(0, 0, 10, 10), 0)
    assert not any(_sample(track, frame, face, probs) for frame, probs in enumerate([b, a, a], 1))
    assert decide(track.samples)[0] == 0  # A, from the mean of three frames
    unsure_b = [0.3, 0.45, 0.25]  # names B, less surely than the track's 0.57 for A
    assert not _sample(track, 4, face, unsure_b) and not _sample(track, 5, face, unsure_b)
    assert track.doubts == 0
    assert not _sample(track, 6, face, b) and _sample(track, 7, face, b)  # two doubts: someone else
    # A stranger's track is never split by the head (its samples name nobody).
    stranger = Track(2, Box(0, 0, 10, 10), 0)
    assert not any(_sample(stranger, frame, face, unknown) for frame in range(1, 4))
    assert not any(_sample(stranger, frame, face, b) for frame in range(4, 8))


def test_a_saturated_track_is_split_by_someone_named_more_surely_than_not() -> None:
    """The head's probabilities saturate: a track at 0.99999 for A, then frames named B at 0.995 (a
    new-user tester's Colin Powell, then Tony Blair in his place; A 0.0034, unknown 0.0019 in them).
    Not "as surely", yet B more likely than not: two of them are someone else. A frame named B a
    little more surely than A, less than even, is not."""
    face = np.ones(8, np.float32)
    sure_a = [0.99999, 0.000005, 0.000005]
    track = Track(1, Box(0, 0, 10, 10), 0)
    assert not any(_sample(track, frame, face, sure_a) for frame in range(1, 4))
    look_alike = [0.3, 0.45, 0.25]
    assert not _sample(track, 4, face, look_alike) and not _sample(track, 5, face, look_alike)
    assert track.doubts == 0
    newcomer = [0.0034, 0.9947, 0.0019]
    assert not _sample(track, 6, face, newcomer) and _sample(track, 7, face, newcomer)


def test_after_a_new_version_a_decided_track_compares_people_by_id() -> None:
    """A new version arrived while a face was in view: its outputs are other indices, so the head's
    names were not compared at all, and a swap whose faces agree above the cosine went unnoticed
    until the face left (a tester saw no decision for a minute after each update). The people are
    compared by id instead: the same person under a new index is no doubt, another is."""
    face = np.ones(8, np.float32)
    track = Track(1, Box(0, 0, 10, 10), 0)
    assert not any(_sample(track, frame, face, [0.99999, 0.000005, 0.000005]) for frame in range(1, 4))
    track.decided, track.person_id = True, 7  # the agent's decision named person 7
    newer = np.array([0.001, 0.002, 0.995, 0.002], np.float32)  # version 2: a person added before them
    assert not track.someone_else(face, 4, newer, 2, named_person=7)  # still person 7: no doubt
    assert not track.someone_else(face, 5, newer, 2, named_person=7) and track.doubts == 0
    assert not track.someone_else(face, 6, newer, 2, named_person=9)
    assert track.someone_else(face, 7, newer, 2, named_person=9)  # two in a row: someone else
    # A stranger's track (no person) is still never split by the head.
    stranger = Track(2, Box(0, 0, 10, 10), 0)
    assert not any(_sample(stranger, frame, face, [0.1, 0.1, 0.8]) for frame in range(1, 4))
    stranger.decided = True
    assert not any(stranger.someone_else(face, f, newer, 2, named_person=9) for f in range(4, 8))


def test_a_stranger_decision_is_as_sure_as_the_face_is_nobody_in_the_roster() -> None:
    """Once the server has no version (every person deleted) every face is a stranger for sure, a
    face of a deleted person (it was reported with that person's 0.997) and any other alike; with
    part of the roster gone, the outputs of those gone count towards the stranger."""
    files = Path("unused")
    people = {"a (1)": Person(1, "a", "a (1)"), "b (2)": Person(2, "b", "b (2)")}
    version = CachedVersion(
        2, ModelChoice.TFLITE_INT8, ["a (1)", "b (2)"], "unknown", people, files, files, files
    )
    nearest_a = np.array([0.6, 0.1, 0.3], np.float32)
    unknown_won = np.array([0.1, 0.2, 0.7], np.float32)
    assert stranger_probability([unknown_won], version) == pytest.approx(0.7)  # everyone there: p_unknown
    nobody = version.without_people()
    assert [stranger_probability([s], nobody) for s in (nearest_a, unknown_won)] == [1.0, 1.0]
    without_b = CachedVersion(
        2, ModelChoice.TFLITE_INT8, version.labels, "unknown", {"a (1)": people["a (1)"]}, files, files, files
    )
    assert stranger_probability([unknown_won, nearest_a], without_b) == pytest.approx((0.9 + 0.4) / 2)
