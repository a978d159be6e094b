"""Large galleries: above the exact-scoring limits the head calibrates on a fixed sample, and lands
where scoring every photo would (synthetic unit embeddings: the property is statistical, and real
galleries of thousands of people are not in the shared photos)."""

from __future__ import annotations

import numpy as np
import pytest

from faceforge.building import head_fitting as head_module
from faceforge.building.head_fitting import SCALE_GRID, fit_and_evaluate

SHARED = 2.0  # the common direction's weight: impostors score close to genuine photos


def _gallery(people: int, photos: int) -> tuple[np.ndarray, list[str]]:
    """People whose centres share a common direction (impostors score well above random vectors'
    zero, as faces do) and photos at cosine ~0.8 to each other."""
    random = np.random.default_rng(7)
    common = random.standard_normal(640)
    common /= np.linalg.norm(common)
    centres = random.standard_normal((people, 640))
    centres = centres / np.linalg.norm(centres, axis=1, keepdims=True) + SHARED * common
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = random.standard_normal((people, photos, 640))
    noise *= 0.5 / np.linalg.norm(noise, axis=2, keepdims=True)
    embeddings = (centres[:, None, :] + noise).reshape(-1, 640)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings.astype(np.float32), [f"p{i}" for i in range(people) for _ in range(photos)]


def test_a_sampled_calibration_lands_where_the_exact_one_does(monkeypatch: pytest.MonkeyPatch) -> None:
    embeddings, labels = _gallery(400, 5)
    exact, exact_metrics, _ = fit_and_evaluate(embeddings, labels)
    assert head_module.MIN_THRESHOLD + 0.02 < exact.threshold < 0.98  # calibrated, not at a bound
    assert exact_metrics["scored_photos"] == exact_metrics["photos"] == 2000

    # The same gallery as if it were ten times larger than the exact limits.
    monkeypatch.setattr(head_module, "MAX_SCORED_PHOTOS", 600)
    monkeypatch.setattr(head_module, "MAX_SCALE_ROWS", 300)
    monkeypatch.setattr(head_module, "MIN_SCALE_ROWS", 300)
    sampled, metrics, quality = fit_and_evaluate(embeddings, labels)
    assert metrics["scored_photos"] == 600 and metrics["photos"] == 2000
    # A 97 % quantile from ~600 maxima: its standard error is ~0.7 % of the scores' spread.
    assert abs(sampled.threshold - exact.threshold) < 0.01
    estimates = [h.calibration.estimated_unknown_reject for h in (sampled, exact)]
    assert estimates[0] is not None and estimates[1] is not None
    assert abs(estimates[0] - estimates[1]) < 0.01
    accepts = [metrics["accept_rate"], exact_metrics["accept_rate"]]
    assert accepts[0] is not None and accepts[1] is not None and abs(accepts[0] - accepts[1]) < 0.03
    assert abs(SCALE_GRID.index(sampled.scale) - SCALE_GRID.index(exact.scale)) <= 1
    np.testing.assert_array_equal(sampled.prototypes, exact.prototypes)  # prototypes use every photo
    assert sum(quality["histogram"]["genuine"]) == metrics["held_out_photos"] == 600
