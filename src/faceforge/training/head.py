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
  person who is not enrolled scores (they are just other people).
The operating point is stated as the share of strangers to reject (``target_unknown_reject``). A
stranger is rejected when their best score over all C classes stays below the threshold; an enrolled
photo's best other score covers C - 1 of them, so the estimate multiplies its empirical CDF by that
of a single photo-vs-person score (the C-th class). The threshold is the smallest value whose
estimate reaches the target. Empirical distributions, not a normal fit: the tail of a maximum is not
normal (a normal fit at 99 % overshot to 99.6 % on real strangers and turned away 14 % of known
people), and a few extreme scores move an empirical quantile by at most their share.

People registered twice, and photos filed under the wrong person, would put genuine scores among the
impostors and push the threshold above every genuine score. Pairs of people whose prototypes are as
alike as a person's own photos are to their prototype (the median genuine score), and photos that
score that high against another person, are left out of the impostor scores and reported as
suspected duplicates.

With fewer than ``MIN_IMPOSTOR_SCORES`` impostor scores (one or two people) the prior
``DEFAULT_THRESHOLD`` measured for this embedder on the dev photos is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from faceforge.domain.errors import TrainingError

FloatArray = npt.NDArray[np.float32]

# Measured on lfw_dev (FaceNet): rejecting 97 % of strangers keeps 93 % of known people's photos
# (95 %: 95 %; 99 %: 87 %). See the README for the trade-off.
DEFAULT_TARGET_UNKNOWN_REJECT = 0.97
MIN_IMPOSTOR_SCORES = 20
# Levels in the fused embedder's cosine scale (vision.embedding_net), measured:
# lfw_dev's median leave-one-out genuine score: the duplicate level when nobody has two photos.
DEFAULT_DUPLICATE_LEVEL = 0.94
# krasserm_lfw10, each person enrolled alone from 5 photos, against 506 strangers (lfw_dev/unknown
# and unknown_singles): the 99th percentile of stranger scores is 0.81-0.86 per person; the person's
# own other photos score 0.86 or more.
DEFAULT_THRESHOLD = 0.86
# Unrelated faces score 0.69 on average: a threshold below this would accept most strangers.
MIN_THRESHOLD = 0.70
SCALE_GRID = tuple(
    float(s)
    for s in (5, 7.5, 10, 12.5, 15, 20, 25, 30, 40, 50, 64, 80, 100, 128, 160, 200, 256, 320, 400, 512)
)
DEFAULT_SCALE = 20.0


@dataclass(slots=True)
class Calibration:
    """How the threshold and scale were chosen, with the statistics behind them (stored with models)."""

    method: str
    genuine_count: int
    impostor_count: int
    genuine_mean: float | None
    impostor_mean: float | None
    target_unknown_reject: float | None = None
    estimated_unknown_reject: float | None = None  # strangers rejected at the threshold
    estimated_known_accept: float | None = None  # held-out known photos accepted as the right person
    duplicate_level: float | None = None
    suspected_duplicates: list[dict[str, Any]] = field(default_factory=list)

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


@dataclass(slots=True)
class _Scores:
    genuine: FloatArray  # leave-one-out, photos whose class has others
    held: npt.NDArray[np.bool_]  # which photos those are
    impostor: FloatArray  # best other score per photo that calibration keeps
    pair_scores: FloatArray  # every kept photo-vs-other-person score
    best_other: FloatArray  # best other score per photo, duplicates excluded
    others: FloatArray  # (N, C) photo-vs-other-person scores, own class and duplicates at -inf
    duplicate_level: float
    suspects: list[dict[str, Any]]


def _scores(
    embeddings: FloatArray, codes: npt.NDArray[np.int64], sums: FloatArray, labels: list[str]
) -> _Scores:
    genuine, _, others = _calibration_scores(embeddings, codes, sums)
    counts = np.bincount(codes, minlength=len(sums))
    held = counts[codes] > 1
    level = float(np.median(genuine)) if len(genuine) else DEFAULT_DUPLICATE_LEVEL
    prototypes = _normalise_rows(sums)
    alike = prototypes @ prototypes.T
    np.fill_diagonal(alike, -1.0)
    suspects: list[dict[str, Any]] = []
    # The same person registered twice: their classes are not impostors of each other.
    for a, b in zip(*np.nonzero(np.triu(alike >= level, k=1)), strict=True):
        others[codes == a, b] = -np.inf
        others[codes == b, a] = -np.inf
        suspects.append(
            {"labels": [labels[a], labels[b]], "similarity": float(alike[a, b]), "kind": "person"}
        )
    best_other = others.max(axis=1) if len(sums) > 1 else np.full(len(embeddings), -1.0, np.float32)
    # A photo that matches another person as well as people match their own photos: filed wrongly.
    misfiled = best_other >= level
    for row in np.flatnonzero(misfiled):
        other = int(np.argmax(others[row]))
        suspects.append(
            {
                "labels": [labels[codes[row]], labels[other]],
                "similarity": float(best_other[row]),
                "kind": "photo",
            }
        )
    kept = ~misfiled & np.isfinite(best_other)
    pair_scores = others[kept][np.isfinite(others[kept])]
    return _Scores(
        genuine=genuine,
        held=held,
        impostor=best_other[kept].astype(np.float32),
        pair_scores=pair_scores.astype(np.float32),
        best_other=best_other.astype(np.float32),
        others=others,
        duplicate_level=level,
        suspects=suspects,
    )


def _share_below(sorted_scores: FloatArray, threshold: float) -> float:
    return float(np.searchsorted(sorted_scores, threshold, side="left")) / max(len(sorted_scores), 1)


def estimated_unknown_reject(scores: _Scores, threshold: float) -> float:
    """Share of strangers whose best score over every enrolled person stays below ``threshold``."""
    best = np.sort(scores.impostor)
    pairs = np.sort(scores.pair_scores)
    return _share_below(best, threshold) * _share_below(pairs, threshold)


def _threshold_for(scores: _Scores, target: float) -> float:
    """The smallest threshold whose estimated stranger rejection reaches ``target`` (monotone: bisect)."""
    low, high = MIN_THRESHOLD, 1.0
    if estimated_unknown_reject(scores, low) >= target:
        return low
    for _ in range(40):
        middle = (low + high) / 2
        if estimated_unknown_reject(scores, middle) >= target:
            high = middle
        else:
            low = middle
    return high


def _estimated_known_accept(scores: _Scores, threshold: float) -> float | None:
    """Held-out known photos nearest their own person and at or above ``threshold``."""
    if not scores.held.any():
        return None
    genuine, best_other = scores.genuine, scores.best_other[scores.held]
    return float(((genuine >= threshold) & (genuine > best_other)).mean())


def fit_head(
    embeddings: FloatArray, labels: list[str], *, target_unknown_reject: float = DEFAULT_TARGET_UNKNOWN_REJECT
) -> RecognitionHead:
    """Fit prototypes and calibrate the unknown threshold and probability scale from enrolled data.

    ``embeddings`` is ``(N, D)`` float32 unit vectors; ``labels[i]`` is the class of row ``i``. At least
    one class with at least one embedding is required. The threshold rejects an estimated
    ``target_unknown_reject`` of strangers.
    """
    if len(embeddings) == 0 or len(embeddings) != len(labels):
        raise TrainingError("training needs at least one embedding, and one label per embedding")
    if not 0.5 <= target_unknown_reject < 1.0:
        raise TrainingError("the share of strangers to reject must be in [0.5, 1)")
    classes = sorted(set(labels))
    index = {label: i for i, label in enumerate(classes)}
    codes = np.array([index[label] for label in labels], dtype=np.int64)
    embeddings = _normalise_rows(np.asarray(embeddings, dtype=np.float32))
    sums = np.zeros((len(classes), embeddings.shape[1]), np.float32)
    np.add.at(sums, codes, embeddings)
    scores = _scores(embeddings, codes, sums, classes)

    if len(scores.impostor) >= MIN_IMPOSTOR_SCORES:
        threshold = _threshold_for(scores, target_unknown_reject)
        method = "impostor_empirical"
    else:
        threshold = DEFAULT_THRESHOLD
        method = "prior_default"
    scale = _fit_scale(scores.genuine, codes, sums, scores.others, threshold, embeddings)
    calibration = Calibration(
        method=method,
        genuine_count=len(scores.genuine),
        impostor_count=len(scores.impostor),
        genuine_mean=float(scores.genuine.mean()) if len(scores.genuine) else None,
        impostor_mean=float(scores.impostor.mean()) if len(scores.impostor) else None,
        target_unknown_reject=target_unknown_reject,
        estimated_unknown_reject=estimated_unknown_reject(scores, threshold)
        if len(scores.impostor)
        else None,
        estimated_known_accept=_estimated_known_accept(scores, threshold),
        duplicate_level=scores.duplicate_level,
        suspected_duplicates=scores.suspects,
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


def _enrolled_scores(
    embeddings: FloatArray, labels: list[str], head: RecognitionHead
) -> tuple[npt.NDArray[np.int64], _Scores]:
    """The calibration's scores of a fitted head's own enrolled photos, with their class codes."""
    index = {label: i for i, label in enumerate(head.labels)}
    codes = np.array([index[label] for label in labels], dtype=np.int64)
    unit = _normalise_rows(np.asarray(embeddings, np.float32))
    sums = np.zeros_like(head.prototypes)
    np.add.at(sums, codes, unit)
    return codes, _scores(unit, codes, sums, head.labels)


def leave_one_out_metrics(embeddings: FloatArray, labels: list[str], head: RecognitionHead) -> dict[str, Any]:
    """Held-out figures from enrolled photos alone: each photo is scored against prototypes rebuilt
    without it (people with a single photo cannot be held out and are skipped).

    ``top1``: held-out photo nearest to its own person; ``accept_rate``: held out, nearest to its own
    person and above the threshold; ``false_accept_rate``: photos whose best *other* person reaches the
    threshold (a stand-in for strangers; suspected duplicates left out, as in calibration);
    ``estimated_unknown_reject``: strangers rejected at the threshold, as calibration estimates it.
    """
    _, scores = _enrolled_scores(embeddings, labels, head)
    held = scores.held
    genuine, best_other = scores.genuine, scores.best_other[held]
    nearest_own = genuine > best_other
    return {
        "method": "leave-one-out over enrolled photos",
        "held_out_photos": int(held.sum()),
        "people": len(head.labels),
        "top1": float(nearest_own.mean()) if held.any() else None,
        "accept_rate": float((nearest_own & (genuine >= head.threshold)).mean()) if held.any() else None,
        "false_accept_rate": float((scores.impostor >= head.threshold).mean())
        if len(scores.impostor)
        else None,
        "estimated_unknown_reject": (
            estimated_unknown_reject(scores, head.threshold) if len(scores.impostor) else None
        ),
        "suspected_duplicates": scores.suspects,
    }


QUALITY_BINS = 40
QUALITY_CURVE_POINTS = 61
QUALITY_WORST_PEOPLE = 10


def quality_figures(embeddings: FloatArray, labels: list[str], head: RecognitionHead) -> dict[str, Any]:
    """What a version's quality view plots, from enrolled photos alone (the calibration's own scores).

    - ``histogram``: counts of held-out genuine scores (a photo against its own person rebuilt without
      it) and of impostor scores (a photo's best other person), on shared ``edges``;
    - ``curve``: as the threshold moves, the estimated share of known photos accepted and of strangers
      rejected (the estimators calibration uses), with the version's own ``threshold``;
    - ``people``: those whose photos agree least with each other (lowest mean held-out genuine
      score first): candidates for better photos.
    """
    codes, scores = _enrolled_scores(embeddings, labels, head)
    values = np.concatenate([scores.genuine, scores.impostor])
    low = float(min(values.min(), head.threshold) if len(values) else head.threshold) - 0.01
    edges = np.linspace(max(-1.0, low), 1.0, QUALITY_BINS + 1)
    curve = []
    if len(scores.impostor):
        for threshold in np.linspace(edges[0], 1.0, QUALITY_CURVE_POINTS):
            curve.append(
                {
                    "threshold": round(float(threshold), 4),
                    "known_accept": _estimated_known_accept(scores, float(threshold)),
                    "unknown_reject": round(estimated_unknown_reject(scores, float(threshold)), 4),
                }
            )
    held_codes = codes[scores.held]
    people = []
    for code in np.unique(held_codes):
        own = scores.genuine[held_codes == code]
        people.append(
            {
                "label": head.labels[code],
                "photos": int((codes == code).sum()),
                "genuine_mean": round(float(own.mean()), 4),
                "genuine_min": round(float(own.min()), 4),
            }
        )
    people.sort(key=lambda person: person["genuine_mean"])
    return {
        "histogram": {
            "edges": [round(float(edge), 4) for edge in edges],
            "genuine": np.histogram(scores.genuine, edges)[0].tolist(),
            "impostor": np.histogram(scores.impostor, edges)[0].tolist(),
        },
        "threshold": head.threshold,
        "curve": curve,
        "people": people[:QUALITY_WORST_PEOPLE],
    }
