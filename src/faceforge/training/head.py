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


# Large galleries: the statistics below are quantiles and means, which a fixed random sample pins down
# as well as every row would, at a bounded cost. Up to these sizes every photo, every photo-vs-person
# score and every row of the scale fit is used, exactly (any gallery of a few thousand photos).
MAX_SCORED_PHOTOS = 10_000  # photos whose held-out scores are computed (of N)
MAX_PAIR_SCORES = 4_000_000  # photo-vs-other-person scores kept for the stranger estimate
MAX_SCALE_ROWS = 4_000  # photos whose score rows fit the probability scale ...
MAX_SCALE_CELLS = 2_000_000  # ... fewer with many people (at least MIN_SCALE_ROWS): a softmax per row
MIN_SCALE_ROWS = 1_000
ROW_BLOCK = 1024  # rows scored at once: a block of (1024, C) float32 scores, 40 MB at C = 10,000
SAMPLE_SEED = 0


def _sample(count: int, limit: int, random: np.random.Generator) -> npt.NDArray[np.int64]:
    """All of ``range(count)``, or ``limit`` of them drawn without replacement, in ascending order."""
    if count <= limit:
        return np.arange(count)
    return np.sort(random.choice(count, limit, replace=False))


@dataclass(slots=True)
class _Scores:
    """Scores of the enrolled photos that calibration and the held-out figures use (every photo, or
    a fixed sample of ``MAX_SCORED_PHOTOS`` of them)."""

    codes: npt.NDArray[np.int64]  # class of each scored photo
    genuine: FloatArray  # leave-one-out, scored photos whose class has others
    held: npt.NDArray[np.bool_]  # which scored photos those are
    impostor: FloatArray  # best other score per photo that calibration keeps
    impostor_sorted: FloatArray  # the same, ascending (the estimators search it, many times a fit)
    pair_scores: FloatArray  # photo-vs-other-person scores of kept photos (or a sample), ascending
    best_other: FloatArray  # best other score per scored photo, duplicates excluded
    known_rows: FloatArray  # scale fit: held-out photos' scores, own class left out of its prototype
    known_codes: npt.NDArray[np.int64]
    impostor_rows: FloatArray  # scale fit: photos' scores against other people (own, duplicates -inf)
    duplicate_level: float
    suspects: list[dict[str, Any]]
    photos: int  # enrolled photos in all


def _alike_people(prototypes: FloatArray, level: float) -> list[tuple[int, int, float]]:
    """Pairs ``a < b`` of classes whose prototypes are at least ``level`` alike, in row-major order."""
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, len(prototypes), ROW_BLOCK):
        block = prototypes[start : start + ROW_BLOCK] @ prototypes.T
        rows, columns = np.nonzero(block >= level)
        for row, column in zip(rows, columns, strict=True):
            if column > start + row:
                pairs.append((int(start + row), int(column), float(block[row, column])))
    return pairs


def _scores(
    embeddings: FloatArray, codes: npt.NDArray[np.int64], sums: FloatArray, labels: list[str]
) -> _Scores:
    random = np.random.default_rng(SAMPLE_SEED)
    classes = len(sums)
    prototypes = _normalise_rows(sums)
    counts = np.bincount(codes, minlength=classes)
    scored = _sample(len(embeddings), MAX_SCORED_PHOTOS, random)
    units, own = embeddings[scored], codes[scored]
    held = counts[own] > 1
    genuine = np.einsum("nd,nd->n", units, _normalise_rows(sums[own] - units))[held].astype(np.float32)
    level = float(np.median(genuine)) if len(genuine) else DEFAULT_DUPLICATE_LEVEL
    suspects: list[dict[str, Any]] = []
    duplicates: dict[int, list[int]] = {}
    # The same person registered twice: their classes are not impostors of each other.
    for a, b, similarity in _alike_people(prototypes, level):
        duplicates.setdefault(a, []).append(b)
        duplicates.setdefault(b, []).append(a)
        suspects.append({"labels": [labels[a], labels[b]], "similarity": similarity, "kind": "person"})

    scale_limit = max(MIN_SCALE_ROWS, min(MAX_SCALE_ROWS, MAX_SCALE_CELLS // max(classes, 1)))
    scale_rows = _sample(len(scored), scale_limit, random)
    in_scale_fit = np.zeros(len(scored), np.bool_)
    in_scale_fit[scale_rows] = True
    pair_share = min(1.0, MAX_PAIR_SCORES / max(1, len(scored) * max(classes - 1, 1)))
    best_other = np.full(len(scored), -1.0, np.float32)
    best_class = np.zeros(len(scored), np.int64)
    known_rows, impostor_rows, pair_blocks = [], [], []
    genuine_of = np.zeros(len(scored), np.float32)
    genuine_of[held] = genuine
    for start in range(0, len(scored), ROW_BLOCK):
        stop = min(start + ROW_BLOCK, len(scored))
        block = np.asarray(units[start:stop] @ prototypes.T, np.float32)
        block_codes = own[start:stop]
        local = np.arange(stop - start)
        take = in_scale_fit[start:stop] & held[start:stop]
        if take.any():
            known = block[take].copy()
            known[np.arange(len(known)), block_codes[take]] = genuine_of[start:stop][take]
            known_rows.append(known)
        block[local, block_codes] = -np.inf
        for row in np.flatnonzero(np.isin(block_codes, list(duplicates))):
            block[row, duplicates[int(block_codes[row])]] = -np.inf
        if classes > 1:
            best_other[start:stop] = block.max(axis=1)
            best_class[start:stop] = block.argmax(axis=1)
        impostor_rows.append(block[in_scale_fit[start:stop]])
        kept = (best_other[start:stop] < level) & np.isfinite(best_other[start:stop])
        if classes > 1 and kept.any():
            entries = block[kept]
            entries = entries[np.isfinite(entries)]
            if pair_share < 1.0:  # drawn with replacement: a quantile's sample, at a bounded cost
                entries = entries[random.integers(0, len(entries), round(len(entries) * pair_share))]
            pair_blocks.append(entries)
    # A photo that matches another person as well as people match their own photos: filed wrongly.
    misfiled = best_other >= level
    for row in np.flatnonzero(misfiled):
        suspects.append(
            {
                "labels": [labels[own[row]], labels[best_class[row]]],
                "similarity": float(best_other[row]),
                "kind": "photo",
            }
        )
    kept = ~misfiled & np.isfinite(best_other)
    empty = np.zeros((0, classes), np.float32)
    return _Scores(
        codes=own,
        genuine=genuine,
        held=held,
        impostor=best_other[kept].astype(np.float32),
        impostor_sorted=np.sort(best_other[kept].astype(np.float32)),
        pair_scores=np.sort(np.concatenate(pair_blocks)) if pair_blocks else np.zeros(0, np.float32),
        best_other=best_other,
        known_rows=np.concatenate(known_rows) if known_rows else empty,
        known_codes=own[scale_rows][held[scale_rows]],
        impostor_rows=np.concatenate(impostor_rows) if impostor_rows else empty,
        duplicate_level=level,
        suspects=suspects,
        photos=len(embeddings),
    )


def _share_below(sorted_scores: FloatArray, threshold: float) -> float:
    return float(np.searchsorted(sorted_scores, threshold, side="left")) / max(len(sorted_scores), 1)


def estimated_unknown_reject(scores: _Scores, threshold: float) -> float:
    """Share of strangers whose best score over every enrolled person stays below ``threshold``."""
    return _share_below(scores.impostor_sorted, threshold) * _share_below(scores.pair_scores, threshold)


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
    return _fit(embeddings, labels, target_unknown_reject)[0]


def fit_and_evaluate(
    embeddings: FloatArray, labels: list[str], *, target_unknown_reject: float = DEFAULT_TARGET_UNKNOWN_REJECT
) -> tuple[RecognitionHead, dict[str, Any], dict[str, Any]]:
    """``fit_head``, ``leave_one_out_metrics`` and ``quality_figures`` from one scoring of the enrolled
    photos (the costly step at 10,000 people), as a version is built."""
    head, scores = _fit(embeddings, labels, target_unknown_reject)
    return head, _held_out_figures(scores, head), _quality_figures(scores, head)


def _fit(
    embeddings: FloatArray, labels: list[str], target_unknown_reject: float
) -> tuple[RecognitionHead, _Scores]:
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
    scale = _fit_scale(scores, len(classes), threshold)
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
    head = RecognitionHead(
        labels=classes,
        prototypes=_normalise_rows(sums),
        threshold=float(threshold),
        scale=scale,
        calibration=calibration,
        counts=[int(c) for c in np.bincount(codes, minlength=len(classes))],
    )
    return head, scores


class _SoftmaxLoss:
    """``-sum(log(p_target + 1e-12))`` with ``p = softmax(scale * logits)`` per row, for many scales.

    The row maxima are subtracted once (for a positive scale the maximum of ``scale * logits`` is
    ``scale`` times theirs), so each scale costs one in-place float32 pass for the exponentials,
    summed in float64: at 1,000 people a fit's 40 softmaxes over ~2 M cells took 0.6 s in float64.
    """

    def __init__(self, logits: npt.NDArray[np.floating[Any]], targets: npt.NDArray[np.int64]) -> None:
        shifted = logits - logits.max(axis=1, keepdims=True)
        self.shifted = np.asarray(shifted, np.float32)
        self.target = np.asarray(shifted[np.arange(len(shifted)), targets], np.float64)
        self.buffer = np.empty_like(self.shifted)

    def __call__(self, scale: float) -> float:
        np.multiply(self.shifted, np.float32(scale), out=self.buffer)
        np.exp(self.buffer, out=self.buffer)
        log_probability = scale * self.target - np.log(self.buffer.sum(axis=1, dtype=np.float64))
        return float(-np.log(np.exp(log_probability) + 1e-12).sum())


def _fit_scale(scores: _Scores, classes: int, threshold: float) -> float:
    """Pick the softmax scale that best predicts held-out outcomes (negative log-likelihood on a grid).

    Known case: a held-out embedding against all prototypes, its own rebuilt without it; target is
    its class. Unknown case: an embedding against the other classes only; target is "unknown".
    """
    known, known_codes = scores.known_rows, scores.known_codes
    if not scores.held.any() and classes < 2:
        return DEFAULT_SCALE
    impostor_logits = np.concatenate(
        [
            np.where(np.isfinite(scores.impostor_rows), scores.impostor_rows, -1.0),
            np.full((len(scores.impostor_rows), 1), threshold),
        ],
        axis=1,
    )
    known_logits = np.concatenate([known, np.full((len(known), 1), threshold, np.float32)], axis=1)
    known_loss = _SoftmaxLoss(known_logits, known_codes) if len(known) else None
    unknown = np.full(len(impostor_logits), impostor_logits.shape[1] - 1)  # the last column
    impostor_loss = _SoftmaxLoss(impostor_logits, unknown)
    best_scale, best_loss = DEFAULT_SCALE, np.inf
    for scale in SCALE_GRID:
        loss = 0.0
        if known_loss is not None:
            loss += known_loss(scale)
        if classes > 1:
            loss += impostor_loss(scale)
        if loss < best_loss:
            best_scale, best_loss = scale, loss
    return best_scale


def _enrolled_scores(embeddings: FloatArray, labels: list[str], head: RecognitionHead) -> _Scores:
    """The calibration's scores of a fitted head's own enrolled photos."""
    index = {label: i for i, label in enumerate(head.labels)}
    codes = np.array([index[label] for label in labels], dtype=np.int64)
    unit = _normalise_rows(np.asarray(embeddings, np.float32))
    sums = np.zeros_like(head.prototypes)
    np.add.at(sums, codes, unit)
    return _scores(unit, codes, sums, head.labels)


def leave_one_out_metrics(embeddings: FloatArray, labels: list[str], head: RecognitionHead) -> dict[str, Any]:
    """Held-out figures from enrolled photos alone: each photo is scored against prototypes rebuilt
    without it (people with a single photo cannot be held out and are skipped).

    ``top1``: held-out photo nearest to its own person; ``accept_rate``: held out, nearest to its own
    person and above the threshold; ``false_accept_rate``: photos whose best *other* person reaches the
    threshold (a stand-in for strangers; suspected duplicates left out, as in calibration);
    ``estimated_unknown_reject``: strangers rejected at the threshold, as calibration estimates it.
    """
    return _held_out_figures(_enrolled_scores(embeddings, labels, head), head)


def _held_out_figures(scores: _Scores, head: RecognitionHead) -> dict[str, Any]:
    held = scores.held
    genuine, best_other = scores.genuine, scores.best_other[held]
    nearest_own = genuine > best_other
    return {
        "method": "leave-one-out over enrolled photos",
        "held_out_photos": int(held.sum()),
        "scored_photos": len(scores.codes),  # every photo, or a fixed sample above MAX_SCORED_PHOTOS
        "photos": scores.photos,
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
    return _quality_figures(_enrolled_scores(embeddings, labels, head), head)


def _quality_figures(scores: _Scores, head: RecognitionHead) -> dict[str, Any]:
    codes = scores.codes
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
