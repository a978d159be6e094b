"""``tracking.decide``: the rules on made-up probabilities (``unknown`` last), edge cases included."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.edge.tracking import Rule, decide


def frame(*probabilities: float) -> np.ndarray:
    return np.asarray(probabilities, np.float32)


def check(frames: list[np.ndarray], rule: Rule, best: int, probability: float) -> None:
    decided, mean = decide(frames, rule)
    assert decided == best and mean == pytest.approx(probability, abs=1e-4)


@pytest.mark.parametrize("rule", list(Rule))
def test_one_frame_is_its_own_argmax_under_every_rule(rule: Rule) -> None:
    check([frame(0.1, 0.7, 0.2)], rule, 1, 0.7)
    check([frame(0.3, 0.1, 0.6)], rule, 2, 0.6)  # a stranger


@pytest.mark.parametrize("rule", list(Rule))
def test_a_one_person_head(rule: Rule) -> None:
    assert decide([frame(0.8, 0.2), frame(0.7, 0.3)], rule)[0] == 0
    assert decide([frame(0.2, 0.8), frame(0.3, 0.7)], rule)[0] == 1


def test_no_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        decide([])


def test_majority_needs_more_than_half_of_the_votes() -> None:
    split = [frame(0.6, 0.1, 0.3), frame(0.1, 0.2, 0.7)]  # one vote for person 0, one for unknown
    assert decide(split, Rule.MAJORITY)[0] == 2
    check([*split, frame(0.5, 0.1, 0.4)], Rule.MAJORITY, 0, 0.4)


def test_mean_score_and_mean_probability_differ_on_confident_frames() -> None:
    # log-odds against unknown: ln 9 = 2.2 twice and ln(1e-4 / 0.9999) = -9.2: a confident "unknown"
    # outweighs two fair "person 0" frames in the mean score, not in the mean probability (0.6).
    outvoted = [frame(0.9, 0.1), frame(0.9, 0.1), frame(0.0001, 0.9999)]
    assert decide(outvoted, Rule.MEAN_PROBABILITY)[0] == 0
    assert decide(outvoted, Rule.MEAN_SCORE)[0] == 1
    assert decide(outvoted, Rule.MAJORITY)[0] == 0
    # and the other way: one confident "person 0" (+9.2) against two fair "unknown" (-1.4 each)
    carried = [frame(0.9999, 0.0001), frame(0.2, 0.8), frame(0.2, 0.8)]
    assert decide(carried, Rule.MEAN_PROBABILITY)[0] == 1  # 0.47
    check(carried, Rule.MEAN_SCORE, 0, 0.4666)
    assert decide(carried, Rule.MAJORITY)[0] == 1


def test_a_zero_probability_does_not_make_the_score_infinite() -> None:
    best, probability = decide([frame(0.0, 0.6, 0.4), frame(0.0, 0.7, 0.3)], Rule.MEAN_SCORE)
    assert best == 1 and np.isfinite(probability)
