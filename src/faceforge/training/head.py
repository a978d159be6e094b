"""Open-set recognition head: cosine similarity to class prototypes, with an explicit "unknown".

The head scores an embedding ``e`` (unit vector) against each class prototype ``p_c`` (the normalised
mean of that class's enrolled embeddings): ``s_c = e . p_c``. The best class is the answer when its
similarity reaches ``threshold``; otherwise the face is unknown. Probabilities are
``softmax(scale * [s_1 .. s_C, threshold])``: the last entry is "unknown", and its logit sits exactly at
the threshold, so argmax over the probabilities makes the same decision (this is what gets baked
into exported models).

Calibration uses enrolled embeddings only, never probes:
- genuine scores: each enrolled embedding against its own class prototype computed without it
  (leave-one-out), which is how an unseen photo of a known person scores;
- impostor scores: each enrolled embedding's best similarity over the *other* classes, which is how a
  person who is not enrolled scores.
The threshold is the ``1 - TARGET_FALSE_ACCEPT`` point of a normal fit to the impostor scores, never
below ``MIN_THRESHOLD``; with too few impostor scores (fewer than ``MIN_IMPOSTOR_SCORES``, e.g. one or two
people) the prior ``DEFAULT_THRESHOLD`` measured for this embedder on the dev photos is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from faceforge.domain.errors import TrainingError

FloatArray = npt.NDArray[np.float32]

TARGET_FALSE_ACCEPT = 0.01
# One-sided normal quantile for TARGET_FALSE_ACCEPT (z such that P(Z > z) = 0.01).
FALSE_ACCEPT_Z = 2.3263
MIN_IMPOSTOR_SCORES = 20
# Measured on krasserm_lfw10 with one person enrolled: strangers peak at 0.59 against one prototype.
DEFAULT_THRESHOLD = 0.60
MIN_THRESHOLD = 0.35
SCALE_GRID = tuple(float(s) for s in (5, 7.5, 10, 12.5, 15, 20, 25, 30, 40, 50, 64, 80, 100, 128))
DEFAULT_SCALE = 20.0


@dataclass(slots=True)
class Calibration:
    """How the threshold and scale were chosen, with the statistics behind them (stored with models)."""

    method: str
    genuine_count: int
    impostor_count: int
    genuine_mean: float | None
    impostor_mean: float | None
    impostor_std: float | None
    estimated_genuine_accept: float | None
    target_false_accept: float = TARGET_FALSE_ACCEPT

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class Match:
    index: int | None  # class index, or None when unknown
    similarity: float  # best cosine similarity
    confidence: float  # probability of the best class (or of unknown when index is None)


@dataclass(slots=True)
class RecognitionHead:
    labels: list[str]
    prototypes: FloatArray  # (C, D), unit rows
    threshold: float
    scale: float
    calibration: Calibration
    counts: list[int] = field(default_factory=list)

    def similarities(self, embeddings: FloatArray) -> FloatArray:
        """``(N, D)`` unit embeddings -> ``(N, C)`` cosine similarities."""
        return np.asarray(embeddings @ self.prototypes.T, dtype=np.float32)

    def probabilities(self, embeddings: FloatArray) -> FloatArray:
        """``(N, C + 1)`` probabilities over the classes and, last, "unknown"."""
        sims = self.similarities(embeddings)
        logits = self.scale * np.concatenate([sims, np.full((len(sims), 1), self.threshold, np.float32)], 1)
        return _softmax(logits).astype(np.float32)

    def predict(self, embeddings: FloatArray, *, threshold: float | None = None) -> list[Match]:
        """Best class per embedding, or ``None`` when its similarity is below the threshold."""
        limit = self.threshold if threshold is None else threshold
        sims = self.similarities(embeddings)
        probs = self.probabilities(embeddings)
        matches = []
        for row_sims, row_probs in zip(sims, probs, strict=True):
            best = int(np.argmax(row_sims))
            known = bool(row_sims[best] >= limit)
            confidence = row_probs[best] if known else row_probs[-1]
            matches.append(Match(best if known else None, float(row_sims[best]), float(confidence)))
        return matches


def _softmax(logits: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    result: npt.NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
    return result


def _normalise_rows(matrix: npt.NDArray[np.floating[Any]]) -> FloatArray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    result: FloatArray = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
    return result


def _calibration_scores(
    embeddings: FloatArray, codes: npt.NDArray[np.int64], sums: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Leave-one-out genuine scores, impostor best scores, and the impostor score rows for the scale fit."""
    prototypes = _normalise_rows(sums)
    sims = embeddings @ prototypes.T
    rows = np.arange(len(embeddings))
    counts = np.bincount(codes, minlength=len(sums))
    own_left_out = sums[codes] - embeddings
    has_others = counts[codes] > 1
    genuine = np.einsum("nd,nd->n", embeddings, _normalise_rows(own_left_out))[has_others]
    others = sims.copy()
    others[rows, codes] = -np.inf
    impostor = others.max(axis=1) if len(sums) > 1 else np.zeros(0, np.float32)
    return genuine.astype(np.float32), impostor.astype(np.float32), others


def fit_head(embeddings: FloatArray, labels: list[str]) -> RecognitionHead:
    """Fit prototypes and calibrate the unknown threshold and probability scale from enrolled data.

    ``embeddings`` is ``(N, D)`` float32 unit vectors; ``labels[i]`` is the class of row ``i``. At least
    one class with at least one embedding is required.
    """
    if len(embeddings) == 0 or len(embeddings) != len(labels):
        raise TrainingError("training needs at least one embedding, and one label per embedding")
    classes = sorted(set(labels))
    index = {label: i for i, label in enumerate(classes)}
    codes = np.array([index[label] for label in labels], dtype=np.int64)
    embeddings = _normalise_rows(np.asarray(embeddings, dtype=np.float32))
    sums = np.zeros((len(classes), embeddings.shape[1]), np.float32)
    np.add.at(sums, codes, embeddings)
    genuine, impostor, impostor_rows = _calibration_scores(embeddings, codes, sums)

    if len(impostor) >= MIN_IMPOSTOR_SCORES:
        mean, std = float(impostor.mean()), float(impostor.std(ddof=1))
        threshold = max(MIN_THRESHOLD, mean + FALSE_ACCEPT_Z * std)
        method = "impostor_normal_fit"
    else:
        mean = float(impostor.mean()) if len(impostor) else None  # type: ignore[assignment]
        std = float(impostor.std()) if len(impostor) else None  # type: ignore[assignment]
        threshold = DEFAULT_THRESHOLD
        method = "prior_default"
    scale = _fit_scale(genuine, codes, sums, impostor_rows, threshold, embeddings)
    calibration = Calibration(
        method=method,
        genuine_count=len(genuine),
        impostor_count=len(impostor),
        genuine_mean=float(genuine.mean()) if len(genuine) else None,
        impostor_mean=mean,
        impostor_std=std,
        estimated_genuine_accept=float((genuine >= threshold).mean()) if len(genuine) else None,
    )
    return RecognitionHead(
        labels=classes,
        prototypes=_normalise_rows(sums),
        threshold=float(threshold),
        scale=scale,
        calibration=calibration,
        counts=[int(c) for c in np.bincount(codes, minlength=len(classes))],
    )


def _fit_scale(
    genuine: FloatArray,
    codes: npt.NDArray[np.int64],
    sums: FloatArray,
    impostor_rows: FloatArray,
    threshold: float,
    embeddings: FloatArray,
) -> float:
    """Pick the softmax scale that best predicts held-out outcomes (negative log-likelihood on a grid).

    Known case: the left-out embedding against all prototypes, its own rebuilt without it; target is its
    class. Unknown case: the embedding against the other classes only; target is "unknown".
    """
    counts = np.bincount(codes, minlength=len(sums))
    usable = counts[codes] > 1
    if not usable.any() and len(sums) < 2:
        return DEFAULT_SCALE
    prototypes = _normalise_rows(sums)
    known = embeddings @ prototypes.T
    rows = np.arange(len(embeddings))
    known[rows[usable], codes[usable]] = genuine
    known = known[usable]
    known_codes = codes[usable]
    column = np.full((1,), threshold, np.float32)
    best_scale, best_loss = DEFAULT_SCALE, np.inf
    for scale in SCALE_GRID:
        loss = 0.0
        if len(known):
            logits = scale * np.concatenate([known, np.broadcast_to(column, (len(known), 1))], axis=1)
            probs = _softmax(logits)
            loss += float(-np.log(probs[np.arange(len(known)), known_codes] + 1e-12).sum())
        if len(sums) > 1:
            logits = scale * np.concatenate(
                [
                    np.where(np.isfinite(impostor_rows), impostor_rows, -1.0),
                    np.full((len(impostor_rows), 1), threshold),
                ],
                axis=1,
            )
            probs = _softmax(logits)
            loss += float(-np.log(probs[:, -1] + 1e-12).sum())
        if loss < best_loss:
            best_scale, best_loss = scale, loss
    return best_scale


def leave_one_out_metrics(embeddings: FloatArray, labels: list[str], head: RecognitionHead) -> dict[str, Any]:
    """Held-out figures from enrolled photos alone: each photo is scored against prototypes rebuilt
    without it (people with a single photo cannot be held out and are skipped).

    ``top1``: held-out photo nearest to its own person; ``accept_rate``: held out, nearest to its own
    person and above the threshold; ``false_accept_rate``: photos whose best *other* person reaches the
    threshold (a stand-in for strangers).
    """
    index = {label: i for i, label in enumerate(head.labels)}
    codes = np.array([index[label] for label in labels], dtype=np.int64)
    unit = _normalise_rows(np.asarray(embeddings, np.float32))
    sums = np.zeros_like(head.prototypes)
    np.add.at(sums, codes, unit)
    genuine, impostor, impostor_rows = _calibration_scores(unit, codes, sums)
    counts = np.bincount(codes, minlength=len(head.labels))
    held = counts[codes] > 1
    best_other = impostor_rows.max(axis=1) if len(head.labels) > 1 else np.full(len(unit), -1.0)
    nearest_own = genuine > best_other[held]
    return {
        "method": "leave-one-out over enrolled photos",
        "held_out_photos": int(held.sum()),
        "people": len(head.labels),
        "top1": float(nearest_own.mean()) if held.any() else None,
        "accept_rate": float((nearest_own & (genuine >= head.threshold)).mean()) if held.any() else None,
        "false_accept_rate": float((impostor >= head.threshold).mean()) if len(impostor) else None,
    }
