"""Fitting the open-set recognition head (``core.model.head``): prototypes, margins, threshold and scale
from enrolled embeddings, the population model and the strangers collection.

**The threshold** is the smallest one at which an estimated ``target_unknown_reject`` of strangers
are rejected. A stranger is compared with every enrolled person, so the threshold that matters moves
with the gallery's size and with who is in it. The estimate (``core.model.calibration``) starts from a
population model of unrelated faces (``core.model.population``): strangers drawn from it are scored
against this gallery's actual prototypes, which works for one person as for 10,000. The gallery's own
photos (each a stranger to everyone else) and the strangers collection then move that estimate by how
much they disagree with the model, in proportion to how many of them there are. The threshold never
goes below ``MIN_THRESHOLD``.

**Duplicates.** A person registered twice, or a photo filed under the wrong person, would put genuine
scores among the strangers of the gallery's own evidence. Two people are suspected to be one when
their photos agree with each other about as well as one person's photos agree among themselves (mean
photo-to-photo cosine at least ``own level - DUPLICATE_GAP``, and at least ``DUPLICATE_FLOOR``; the
own level is the mean cosine between the photos of whichever of the two has several, near-copies of
one photo aside, or the population's same-person mean when neither has). A photo is suspected to be
misfiled when it agrees with another person that well and better than with its own person's other
photos. A single photo's agreement is one score, as noisy as a stranger's: where one of the two has a
single photo, it must also stand out from the population model's strangers by more than the number of
such pairs explains (``DUPLICATE_FALSE_FLAGS``). Both are left out
of the gallery's evidence and reported: the two people's scores against each other, and a misfiled
photo itself (it is in its person's prototype, so the person it looks like scores high against that
prototype: those scores are left out too). The population model scores the prototypes the version
ships, a misfiled photo in them, as strangers will meet them. On lfw_dev
(201 people, five photos each, one more photo of a person registered under a second name) this rule
catches 97 % of such duplicates and flags 5 of the 20,100 pairs of different people.

**Strangers collection.** Photos of people who must never be named (``strangers``, one array per
stranger) are real stranger evidence for the estimate, and raise the threshold of a person they come
close to: the person's effective threshold ``threshold + m_c`` becomes the score below which the
stranger's next photo is expected to stay (``_stranger_bounds``: ``STRANGER_Z`` predictive deviations
above the stranger's level, estimated from their photos), so the same stranger seen again stays a
stranger. The threshold itself is chosen with those raised thresholds in place.

The held-out figures use enrolled photos only, never probes: genuine scores are each enrolled embedding
against its own class prototype computed without it (leave-one-out); a photo's best other person
stands in for a stranger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from faceforge.core.errors import TrainingError
from faceforge.core.model.calibration import StrangerEstimate
from faceforge.core.model.head import Calibration, FloatArray, RecognitionHead
from faceforge.core.model.population import PopulationModel, SimulatedStrangers, shipped_model

# The share of strangers to reject unless settings say otherwise (README: the trade-off).
DEFAULT_TARGET_UNKNOWN_REJECT = 0.97
# Unrelated faces score 0.69 on average in the fused embedder's cosine scale: a threshold below this
# would accept most strangers, whatever an estimate says.
MIN_THRESHOLD = 0.70
# Duplicates (module docstring), measured on lfw_dev's 201 people: same-person halves agree at a mean
# photo-to-photo cosine within 0.05 of the person's own photos 97 % of the time; different people
# reach 0.82 in 1 pair of 1,000.
DUPLICATE_GAP = 0.05
DUPLICATE_FLOOR = 0.82
# Two photos agreeing this well are copies of one (an edit, the next frame): 1 pair in 5,000 of
# different photos of one person reaches it on lfw_dev (the largest, 0.986).
NEAR_COPY = 0.98
# Pairs with a one-photo person: the expected number of unrelated such pairs a gallery flags, as the
# population model scores them (about one gallery in ten shows one, whatever its size).
DUPLICATE_FALSE_FLAGS = 0.1
# A collected stranger's next photo stays below a person's raised threshold 95 % of the time.
STRANGER_Z = 1.645
SIMULATED_SCALE_ROWS = 1_000  # drawn strangers whose score rows join the scale fit as "unknown"
SCALE_GRID = tuple(
    float(s)
    for s in (5, 7.5, 10, 12.5, 15, 20, 25, 30, 40, 50, 64, 80, 100, 128, 160, 200, 256, 320, 400, 512)
)
DEFAULT_SCALE = 20.0


def _normalise_rows(matrix: npt.NDArray[np.floating[Any]]) -> FloatArray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    result: FloatArray = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
    return result


# Large galleries: the statistics below are quantiles and means, which a fixed random sample pins down
# as well as every row would, at a bounded cost. Up to these sizes every photo, every photo-vs-person
# score and every row of the scale fit is used, exactly (any gallery of a few thousand photos).
MAX_SCORED_PHOTOS = 10_000  # photos whose held-out scores are computed (of N)
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
class _Duplicates:
    """Suspected duplicates (module docstring): pairs of classes, and misfiled photo rows."""

    alike: dict[int, list[int]]  # class -> classes suspected to be the same person
    misfiled: npt.NDArray[np.bool_]  # per enrolled photo
    suspects: list[dict[str, Any]]
    # class -> classes whose scores against each other are not stranger evidence: those alike, and
    # a misfiled photo's person and the person it looks like (the photo is in its person's
    # prototype, so the other's own photos score high against it: leaving out the photo alone, two
    # misfiled photos moved lfw10's threshold by up to 0.023).
    apart: dict[int, set[int]]


def _own_agreement(units: FloatArray, codes: npt.NDArray[np.int64], classes: int) -> FloatArray:
    """Each class's mean cosine between two of its own (unit) photos that are not near-copies of
    each other; NaN without such a pair. Near-copies (edits of one photo, a burst of frames) agree
    at ``NEAR_COPY`` and more, where two different photos of one person almost never do: counted,
    a second name enrolled from three frames set the duplicate bar at 0.95 and went unflagged."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(classes + 1))
    agreement = np.full(classes, np.nan, np.float32)
    for code in np.flatnonzero(np.diff(bounds) > 1):
        photos = units[order[bounds[code] : bounds[code + 1]]]
        total, count = 0.0, 0
        for start in range(0, len(photos), ROW_BLOCK):  # a person of 20,000 photos: 80 MB at a time
            block = photos[start : start + ROW_BLOCK] @ photos.T
            later = np.arange(len(photos))[None, :] > np.arange(start, start + len(block))[:, None]
            distinct = block[later & (block < NEAR_COPY)]
            total += float(distinct.sum(dtype=np.float64))
            count += len(distinct)
        if count:
            agreement[code] = total / count
    return agreement


def _duplicates(
    units: FloatArray,
    codes: npt.NDArray[np.int64],
    sums: FloatArray,
    labels: list[str],
    population: PopulationModel,
) -> _Duplicates:
    classes = len(sums)
    counts = np.bincount(codes, minlength=classes).astype(np.int64)
    own = _own_agreement(units, codes, classes)
    fallback = float(population.facts.get("same_person_mean", 0.9))
    alike: dict[int, list[int]] = {}
    suspects: list[dict[str, Any]] = []
    # Where one of the two has a single photo (or copies of one), their agreement is one photo's
    # score against the other: as noisy as a stranger's, and with many people some unrelated pair
    # reaches any fixed bar (471 one-photo people of lfw_dev/unknown, all different: 26 pairs, 11 %
    # of them flagged). Such a pair must also stand out from how unrelated faces score against the
    # other person (the population model) by more than the gallery's number of pairs explains.
    single = np.isnan(own)
    lengths = np.sqrt(np.einsum("cd,cd->c", sums, sums)) / counts  # the mean photo's length
    centre, spread = population.score_moments(_normalise_rows(sums))
    singles = int(single.sum())
    pairs = singles * (classes - 1) - singles * (singles - 1) / 2  # the pairs this test is put to
    # And the photos: each against each one-photo person, and one-photo people's against everyone.
    single_photos = int(counts[single].sum())
    photo_pairs = len(units) * singles + single_photos * (classes - 1)

    def bar(tests: float) -> float:
        return NormalDist().inv_cdf(1.0 - DUPLICATE_FALSE_FLAGS / tests) if tests >= 1 else np.inf

    needed, needed_by_photo = bar(pairs), bar(photo_pairs)

    def stands_out(one: int, other: int, agreement: float, needed: float = needed) -> bool:
        """Whether ``one``'s photo agrees with ``other`` beyond what a stranger's would."""
        z = (agreement - lengths[other] * centre[other]) / (lengths[other] * spread[other])
        return bool(z >= needed)

    for start in range(0, classes, ROW_BLOCK):
        stop = min(start + ROW_BLOCK, classes)
        # Mean photo-to-photo cosine between two classes: their sums' dot product over n_a n_b.
        cross = (sums[start:stop] @ sums.T) / (counts[start:stop, None] * counts[None, :])
        level = np.fmax(own[start:stop, None], own[None, :])  # NaN only where neither has two photos
        level = np.where(np.isnan(level), fallback, level)
        alike_mask = (cross >= level - DUPLICATE_GAP) & (cross >= DUPLICATE_FLOOR)
        rows, columns = np.nonzero(alike_mask)
        for row, column in zip(rows, columns, strict=True):
            a, b = start + int(row), int(column)
            if b <= a:
                continue
            agreement = float(cross[row, column])
            if (single[a] and not stands_out(a, b, agreement)) or (
                single[b] and not stands_out(b, a, agreement)
            ):
                continue
            alike.setdefault(a, []).append(b)
            alike.setdefault(b, []).append(a)
            suspects.append(
                {"labels": [labels[a], labels[b]], "similarity": float(cross[row, column]), "kind": "person"}
            )
    # A photo that agrees with another person as well as that person's photos agree among
    # themselves, and better than with its own person's other photos: filed under the wrong person.
    misfiled = np.zeros(len(units), np.bool_)
    apart = {code: set(others) for code, others in alike.items()}
    norms = np.sqrt(np.einsum("cd,cd->c", sums, sums))
    prototypes = _normalise_rows(sums)
    own_level = np.where(np.isnan(own), fallback, own)
    for start in range(0, len(units), ROW_BLOCK):
        stop = min(start + ROW_BLOCK, len(units))
        block_codes = codes[start:stop]
        mean_cosine = (units[start:stop] @ prototypes.T) * (norms / counts)[None, :]
        local = np.arange(stop - start)
        own_counts = counts[block_codes]
        with np.errstate(divide="ignore", invalid="ignore"):
            with_own = (mean_cosine[local, block_codes] * own_counts - 1.0) / (own_counts - 1.0)
        with_own = np.where(own_counts > 1, with_own, -np.inf)
        candidates = mean_cosine.copy()
        candidates[local, block_codes] = -np.inf
        for row in np.flatnonzero(np.isin(block_codes, list(alike))):
            candidates[row, alike[int(block_codes[row])]] = -np.inf  # already reported as people
        other = candidates.argmax(axis=1)
        best = candidates[local, other]
        flagged = (best >= own_level[other] - DUPLICATE_GAP) & (best >= DUPLICATE_FLOOR) & (best > with_own)
        for row in np.flatnonzero(flagged):
            filed, resembled = int(block_codes[row]), int(other[row])
            # Where either has a single photo, the photo's agreement with the other is as noisy
            # as a stranger's score (the only photo of its person has none of its own to agree with
            # better; a one-photo person's "photos" are one): it must stand out, as a pair's must.
            agreement = float(best[row])
            if (single[filed] or single[resembled]) and not stands_out(
                filed, resembled, agreement, needed_by_photo
            ):
                continue
            if (
                single[filed]
                and single[resembled]
                and not stands_out(resembled, filed, agreement, needed_by_photo)
            ):
                continue  # both ways, as the pair rule asks (a refused pair came back as a photo)
            misfiled[start + row] = True
            apart.setdefault(filed, set()).add(resembled)
            apart.setdefault(resembled, set()).add(filed)
            suspects.append(
                {
                    "labels": [labels[int(block_codes[row])], labels[int(other[row])]],
                    "similarity": float(best[row]),
                    "kind": "photo",
                }
            )
    return _Duplicates(alike=alike, misfiled=misfiled, suspects=suspects, apart=apart)


@dataclass(slots=True)
class _Scores:
    """Scores of the enrolled photos that calibration and the held-out figures use (every photo, or
    a fixed sample of ``MAX_SCORED_PHOTOS`` of them), all as decision scores (similarity less the
    person's margin)."""

    codes: npt.NDArray[np.int64]  # class of each scored photo
    genuine: FloatArray  # leave-one-out, scored photos whose class has others
    held: npt.NDArray[np.bool_]  # which scored photos those are
    impostor: FloatArray  # best other score of each kept photo (not misfiled; duplicates' classes left out)
    kept_per_class: npt.NDArray[np.int64]  # how many kept photos each class has
    best_other: FloatArray  # best other score per scored photo, duplicates excluded
    # Best other score counting everyone: whom the version would name instead (a person registered
    # twice takes photos from their other name; calibration leaves that pair out, naming does not).
    naming_other: FloatArray
    # The same as similarities (margins left out): whom the version would name if no collected
    # stranger had raised anyone's threshold.
    naming_other_similarity: FloatArray
    known_rows: FloatArray  # scale fit: held-out photos' scores, own class left out of its prototype
    known_codes: npt.NDArray[np.int64]
    impostor_rows: FloatArray  # scale fit: photos' scores against other people (own, duplicates -inf)
    suspects: list[dict[str, Any]]
    photos: int  # enrolled photos in all
    estimate: StrangerEstimate | None = None  # set once the threshold is chosen


def _scores(
    embeddings: FloatArray,
    codes: npt.NDArray[np.int64],
    sums: FloatArray,
    duplicates: _Duplicates,
    margins: FloatArray,
    levels: FloatArray | None = None,
) -> _Scores:
    """``levels``: for calibration, a score against another person counts only when it reaches
    their level (their raised threshold), and is then the similarity itself; without, scores are
    decision scores (similarity less margin), as the version answers."""
    random = np.random.default_rng(SAMPLE_SEED)
    classes = len(sums)
    prototypes = _normalise_rows(sums)
    counts = np.bincount(codes, minlength=classes)
    scored = _sample(len(embeddings), MAX_SCORED_PHOTOS, random)
    units, own = embeddings[scored], codes[scored]
    held = counts[own] > 1
    genuine_similarity = np.einsum("nd,nd->n", units, _normalise_rows(sums[own] - units))
    genuine = (genuine_similarity - margins[own])[held].astype(np.float32)
    apart = {code: sorted(others) for code, others in duplicates.apart.items()}

    scale_limit = max(MIN_SCALE_ROWS, min(MAX_SCALE_ROWS, MAX_SCALE_CELLS // max(classes, 1)))
    scale_rows = _sample(len(scored), scale_limit, random)
    in_scale_fit = np.zeros(len(scored), np.bool_)
    in_scale_fit[scale_rows] = True
    best_other = np.full(len(scored), -np.inf, np.float32)
    naming_other = np.full(len(scored), -np.inf, np.float32)
    naming_other_similarity = np.full(len(scored), -np.inf, np.float32)
    # Whether a photo has another person to be scored against (duplicates' classes aside): one whose
    # every such score falls below those people's levels is rejected there (-inf), not missing: left
    # out, the gallery's evidence kept only the photos scoring highest, and the estimate was low.
    comparable = np.zeros(len(scored), np.bool_)
    known_rows, impostor_rows = [], []
    genuine_of = np.zeros(len(scored), np.float32)
    genuine_of[held] = genuine
    for start in range(0, len(scored), ROW_BLOCK):
        stop = min(start + ROW_BLOCK, len(scored))
        block = np.asarray(units[start:stop] @ prototypes.T, np.float32) - margins[None, :]
        block_codes = own[start:stop]
        local = np.arange(stop - start)
        take = in_scale_fit[start:stop] & held[start:stop]
        if take.any():
            known = block[take].copy()
            known[np.arange(len(known)), block_codes[take]] = genuine_of[start:stop][take]
            known_rows.append(known)
        block[local, block_codes] = -np.inf
        if classes > 1:
            naming_other[start:stop] = block.max(axis=1)
            naming_other_similarity[start:stop] = (block + margins[None, :]).max(axis=1)
        reachable = block.copy() if levels is not None else block  # the same scores without levels
        if levels is not None:
            block[block < levels[None, :]] = -np.inf
        for row in np.flatnonzero(np.isin(block_codes, list(apart))):
            block[row, apart[int(block_codes[row])]] = -np.inf
            reachable[row, apart[int(block_codes[row])]] = -np.inf
        if classes > 1:
            best_other[start:stop] = block.max(axis=1)
            comparable[start:stop] = np.isfinite(reachable.max(axis=1))
        impostor_rows.append(block[in_scale_fit[start:stop]])
    kept = ~duplicates.misfiled[scored] & comparable
    empty = np.zeros((0, classes), np.float32)
    return _Scores(
        codes=own,
        genuine=genuine,
        held=held,
        impostor=best_other[kept].astype(np.float32),
        kept_per_class=np.bincount(own[kept], minlength=classes).astype(np.int64),
        best_other=best_other,
        naming_other=naming_other,
        naming_other_similarity=naming_other_similarity,
        known_rows=np.concatenate(known_rows) if known_rows else empty,
        known_codes=own[scale_rows][held[scale_rows]],
        impostor_rows=np.concatenate(impostor_rows) if impostor_rows else empty,
        suspects=duplicates.suspects,
        photos=len(embeddings),
    )


def _checked_embeddings(
    vectors: npt.ArrayLike, dimension: int, what: str, owners: Sequence[str] = ()
) -> FloatArray:
    """``(n, dimension)`` finite vectors (one vector is one row), none of them zero, as unit rows;
    else a ``TrainingError`` naming the first damaged row and, from ``owners``, whose it is. One
    NaN (a damaged stored embedding) made every drawn stranger's best score NaN: the threshold went
    to 1.0 and the version named nobody, and a stranger's NaN set every person's margin to NaN
    while the version's figures said all was well."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dimension or not len(array):
        raise TrainingError(f"{what} must be (n, {dimension}) with n >= 1, not {array.shape}")
    damaged = ~np.isfinite(array).all(axis=1) | (np.linalg.norm(array, axis=1) < 1e-6)
    if damaged.any():
        first = int(np.argmax(damaged))
        whose = f"row {first}, of {owners[first]!r}" if first < len(owners) else f"row {first}"
        raise TrainingError(
            f"{what} ({whose}) is damaged: values that are not finite numbers, or a vector of "
            "length 0; delete that photo, or embed the stored photos again"
        )
    return _normalise_rows(array)


def _stranger_scores(
    strangers: Sequence[FloatArray], prototypes: FloatArray
) -> tuple[npt.NDArray[np.int64], FloatArray, FloatArray]:
    """Collected strangers' photos: whose photo each is, the photos' unit embeddings, and their
    similarities to every person ``(P, C)``."""
    if not strangers:
        dimension = prototypes.shape[1]
        return (
            np.zeros(0, np.int64),
            np.zeros((0, dimension), np.float32),
            np.zeros((0, len(prototypes)), np.float32),
        )
    units = np.concatenate(strangers)  # checked: (k, D) unit rows each (_checked_embeddings)
    owner = np.concatenate([np.full(len(s), i, np.int64) for i, s in enumerate(strangers)])
    similarities = np.asarray(units @ prototypes.T, np.float32)
    return owner, units, similarities


def _stranger_people(
    units: FloatArray, owner: npt.NDArray[np.int64], population: PopulationModel
) -> npt.NDArray[np.int64]:
    """Which collected strangers are one person, as a label per stranger. One person is collected as
    several strangers in ordinary use: ``faceforge import --strangers`` makes a stranger of each
    loose photo, and Try it's "Not <name>" adds the mailman again each time.

    Two groups join when their photos agree (mean photo-to-photo cosine) at least at the
    population's pair midpoint, where one pair of different people in 1,000 scores and 94 % of one
    person's pairs do: pairs that agree that well are tried best first, each joining the two groups
    only if the groups as wholes agree that well (average linkage). Linked in chains pair by pair, a
    collection of a few thousand strangers became one group through its one-in-1,000 chance pairs
    (a reviewer's estimate), and nobody was held out from anybody."""
    strangers = int(owner.max()) + 1
    sums = np.zeros((strangers, units.shape[1]), np.float64)
    np.add.at(sums, owner, units)
    counts = np.bincount(owner, minlength=strangers).astype(np.float64)
    midpoint = population.pair.midpoint
    pairs: list[tuple[float, int, int]] = []
    single = sums.astype(np.float32)
    for start in range(0, strangers, ROW_BLOCK):
        stop = min(start + ROW_BLOCK, strangers)
        agreement = (single[start:stop] @ single.T) / (counts[start:stop, None] * counts[None, :])
        rows, columns = np.nonzero(agreement >= midpoint)
        above = columns > rows + start
        pairs += zip(
            agreement[rows[above], columns[above]].tolist(),
            (rows[above] + start).tolist(),
            columns[above].tolist(),
            strict=True,
        )
    parent = np.arange(strangers)

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = int(parent[node])
        return node

    for _, a, b in sorted(pairs, reverse=True):
        first, second = root(a), root(b)
        if first == second:
            continue
        together = float(sums[first] @ sums[second]) / (counts[first] * counts[second])
        if together >= midpoint:
            parent[second] = first
            sums[first] += sums[second]
            counts[first] += counts[second]
    labels = np.array([root(node) for node in range(strangers)], np.int64)
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def _stranger_bounds(
    similarities: FloatArray,
    owner: npt.NDArray[np.int64],
    prototypes: FloatArray,
    population: PopulationModel,
) -> FloatArray:
    """Per collected stranger and person ``(S, C)``, the score the stranger's next photo stays below.

    A stranger's photos score ``x`` against person ``c`` around their own level ``mu`` with the
    population's within-person spread ``w``; ``mu`` itself varies over people as the population model
    says (mean ``m_c``, between-person spread ``b_c``, from ``score_moments``). From ``k`` photos,
    ``mu`` is estimated by shrinking their mean towards ``m_c`` (a stranger picked for scoring high
    usually did so partly by chance), and the next photo is expected within ``STRANGER_Z`` predictive
    deviations above that. A person's level is the highest such bound over the strangers. Needs at
    least one stranger photo.
    """
    strangers = int(owner.max()) + 1
    counts = np.bincount(owner, minlength=strangers).astype(np.float64)
    means = np.zeros((strangers, similarities.shape[1]), np.float64)
    np.add.at(means, owner, similarities)
    means /= counts[:, None]
    centre, spread = population.score_moments(prototypes)
    within = population.within_person_sd**2
    between = np.maximum(spread.astype(np.float64) ** 2 - within, within)[None, :]
    noise = within / counts[:, None]
    shrink = between / (between + noise)
    expected = centre[None, :] + shrink * (means - centre[None, :])
    predictive = np.sqrt(shrink * noise + within)
    bounds: FloatArray = (expected + STRANGER_Z * predictive).astype(np.float32)
    return bounds


def _levels_without_each(bounds: FloatArray, people: npt.NDArray[np.int64]) -> FloatArray:
    """``(S, C)``: every person's level as the collection would set it without stranger ``s`` and
    whoever else is the same person (``people``, from ``_stranger_people``): the highest bound over
    the other people collected; -inf with one person collected."""
    groups = int(people.max()) + 1
    if groups < 2:
        return np.full_like(bounds, -np.inf)
    per_group = np.full((groups, bounds.shape[1]), -np.inf, np.float32)
    np.maximum.at(per_group, people, bounds)
    top_two = np.partition(per_group, groups - 2, axis=0)[-2:]
    highest = per_group.argmax(axis=0)
    columns = np.arange(bounds.shape[1])
    without = np.broadcast_to(top_two[1], per_group.shape).copy()
    without[highest, columns] = top_two[0]
    result: FloatArray = without[people]
    return result


def _strangers_best_held_out(
    similarities: FloatArray, owner: npt.NDArray[np.int64], bounds: FloatArray, people: npt.NDArray[np.int64]
) -> FloatArray:
    """Each collected stranger photo's best score over the people whose level it reaches, with the
    levels set without that stranger (and anyone collected who is the same person): what a stranger
    the collection has not seen meets. Scored against levels their own photos set, the strangers
    would be rejected by construction and vouch for too much; scored with no levels at all, they
    said how the model fits at the bare threshold, which a collection puts at the floor in a small
    gallery, far below the raised thresholds that decide there."""
    without = _levels_without_each(bounds, people)
    best = np.empty(len(similarities), np.float32)
    for start in range(0, len(similarities), ROW_BLOCK):  # (photos, people) blocks, not all at once
        stop = min(start + ROW_BLOCK, len(similarities))
        block = similarities[start:stop]
        best[start:stop] = np.where(block >= without[owner[start:stop]], block, -np.inf).max(axis=1)
    return best


def _estimated_known_accept(scores: _Scores, threshold: float) -> float | None:
    """Held-out known photos nearest their own person and at or above ``threshold``."""
    if not scores.held.any():
        return None
    genuine, best_other = scores.genuine, scores.naming_other[scores.held]
    return float(((genuine >= threshold) & (genuine > best_other)).mean())


def estimated_unknown_reject(scores: _Scores, threshold: float) -> float:
    """Share of strangers whose best decision score stays below ``threshold``, as calibrated."""
    if scores.estimate is None:
        raise TrainingError("these scores have no stranger estimate")
    return scores.estimate.reject(threshold)


def fit_head(
    embeddings: FloatArray,
    labels: list[str],
    *,
    target_unknown_reject: float = DEFAULT_TARGET_UNKNOWN_REJECT,
    strangers: Sequence[FloatArray] = (),
    population: PopulationModel | None = None,
) -> RecognitionHead:
    """Fit prototypes and calibrate the unknown threshold, margins and probability scale.

    ``embeddings`` is ``(N, D)`` float32 unit vectors; ``labels[i]`` is the class of row ``i``. At least
    one class with at least one embedding is required. ``strangers``: one ``(k, D)`` array of unit
    embeddings per collected stranger (people never to be named). The threshold rejects an estimated
    ``target_unknown_reject`` of strangers. ``population`` defaults to the model this release ships.
    """
    return _fit(embeddings, labels, target_unknown_reject, strangers, population)[0]


def fit_and_evaluate(
    embeddings: FloatArray,
    labels: list[str],
    *,
    target_unknown_reject: float = DEFAULT_TARGET_UNKNOWN_REJECT,
    strangers: Sequence[FloatArray] = (),
    population: PopulationModel | None = None,
) -> tuple[RecognitionHead, dict[str, Any], dict[str, Any]]:
    """``fit_head``, ``leave_one_out_metrics`` and ``quality_figures`` from one scoring of the enrolled
    photos (the costly step at 10,000 people), as a version is built."""
    head, scores = _fit(embeddings, labels, target_unknown_reject, strangers, population)
    return head, _held_out_figures(scores, head), _quality_figures(scores, head)


def _calibrate(
    scores: _Scores,
    prototypes: FloatArray,
    levels: FloatArray,
    stranger_best: FloatArray,
    stranger_owner: npt.NDArray[np.int64],
    target: float,
    population: PopulationModel,
) -> tuple[float, StrangerEstimate, SimulatedStrangers]:
    raised = levels if np.isfinite(levels).any() else None
    simulated = population.simulate(prototypes, raised, keep_rows=SIMULATED_SCALE_ROWS)
    estimate = StrangerEstimate.build(
        simulated,
        gallery_best_other=scores.impostor,
        photos_per_class=scores.kept_per_class,
        stranger_best=stranger_best,
        stranger_owner=stranger_owner,
    )
    return estimate.threshold_for(target, MIN_THRESHOLD), estimate, simulated


def _fit(
    embeddings: FloatArray,
    labels: list[str],
    target_unknown_reject: float,
    strangers: Sequence[FloatArray],
    population: PopulationModel | None,
) -> tuple[RecognitionHead, _Scores]:
    if len(embeddings) == 0 or len(embeddings) != len(labels):
        raise TrainingError("training needs at least one embedding, and one label per embedding")
    if not 0.5 <= target_unknown_reject < 1.0:
        raise TrainingError("the share of strangers to reject must be in [0.5, 1)")
    model = population or shipped_model()
    classes = sorted(set(labels))
    index = {label: i for i, label in enumerate(classes)}
    codes = np.array([index[label] for label in labels], dtype=np.int64)
    embeddings = _checked_embeddings(embeddings, model.dimension, "an embedding", labels)
    strangers = [
        _checked_embeddings(stranger, model.dimension, f"an embedding of collected stranger {number}")
        for number, stranger in enumerate(strangers, 1)
    ]
    sums = np.zeros((len(classes), embeddings.shape[1]), np.float32)
    np.add.at(sums, codes, embeddings)
    prototypes = _normalise_rows(sums)
    duplicates = _duplicates(embeddings, codes, sums, classes, model)

    # A person near whom a collected stranger scores gets a level of their own; the threshold is
    # then chosen with every person's effective threshold max(threshold, level) (one pass: the
    # estimate is monotone in the threshold), and the margins are what the levels add to it.
    owner, stranger_units, stranger_similarities = _stranger_scores(strangers, prototypes)
    if len(stranger_similarities):
        bounds = _stranger_bounds(stranger_similarities, owner, prototypes, model)
        levels = bounds.max(axis=0)
        people = _stranger_people(stranger_units, owner, model)
        stranger_best = _strangers_best_held_out(stranger_similarities, owner, bounds, people)
        # Weighed per person, not per entry: the mailman added five times is one stranger's
        # evidence, not five (each entry counted, he outweighed the rest of the collection).
        stranger_person = people[owner]
    else:
        levels = np.full(len(classes), -np.inf, np.float32)
        stranger_best = np.zeros(0, np.float32)
        stranger_person = owner
    calibration_scores = _scores(
        embeddings, codes, sums, duplicates, np.zeros(len(classes), np.float32), levels
    )
    threshold, estimate, simulated = _calibrate(
        calibration_scores, prototypes, levels, stranger_best, stranger_person, target_unknown_reject, model
    )
    margins = np.maximum(levels - threshold, 0.0).astype(np.float32)
    # The version's figures and its scale from its own decision scores: the calibration's count a
    # photo below every level as -inf.
    raised = np.isfinite(levels).any()
    scores = _scores(embeddings, codes, sums, duplicates, margins) if raised else calibration_scores
    scores.estimate = estimate
    scale = _fit_scale(scores, len(classes), threshold, simulated.rows - margins[None, :])
    method = "population"
    if len(calibration_scores.impostor):
        method += "+gallery"
    if len(strangers):
        method += "+strangers"
    calibration = Calibration(
        method=method,
        genuine_count=len(scores.genuine),
        impostor_count=len(scores.impostor),
        genuine_mean=float(scores.genuine.mean()) if len(scores.genuine) else None,
        impostor_mean=float(scores.impostor.mean()) if len(scores.impostor) else None,
        target_unknown_reject=target_unknown_reject,
        estimated_unknown_reject=estimate.reject(threshold),
        estimated_known_accept=_estimated_known_accept(scores, threshold),
        suspected_duplicates=scores.suspects,
        model_unknown_reject=estimate.model_reject(threshold),
        evidence=estimate.evidence(threshold),
        population={
            "embedder": model.embedder,
            "people": model.facts.get("people"),
            "photos": model.facts.get("photos"),
        },
        raised_margins=int((margins > 0).sum()),
    )
    head = RecognitionHead(
        labels=classes,
        prototypes=prototypes,
        threshold=float(threshold),
        scale=scale,
        calibration=calibration,
        counts=[int(c) for c in np.bincount(codes, minlength=len(classes))],
        margins=margins,
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


def _fit_scale(scores: _Scores, classes: int, threshold: float, simulated_rows: FloatArray) -> float:
    """Pick the softmax scale that best predicts held-out outcomes (negative log-likelihood on a grid).

    Known case: a held-out embedding against all prototypes, its own rebuilt without it; target is
    its class. Unknown case: an embedding against the other classes only, and strangers drawn from
    the population model against everyone; target is "unknown".
    """
    known, known_codes = scores.known_rows, scores.known_codes
    impostors = np.concatenate([scores.impostor_rows, simulated_rows.astype(np.float32)])
    if not len(known) and not len(impostors):
        return DEFAULT_SCALE
    impostor_logits = np.concatenate(
        [
            np.where(np.isfinite(impostors), impostors, -1.0),
            np.full((len(impostors), 1), threshold),
        ],
        axis=1,
    )
    known_logits = np.concatenate([known, np.full((len(known), 1), threshold, np.float32)], axis=1)
    known_loss = _SoftmaxLoss(known_logits, known_codes) if len(known) else None
    unknown = np.full(len(impostor_logits), impostor_logits.shape[1] - 1)  # the last column
    impostor_loss = _SoftmaxLoss(impostor_logits, unknown) if len(impostor_logits) else None
    best_scale, best_loss = DEFAULT_SCALE, np.inf
    for scale in SCALE_GRID:
        loss = 0.0
        if known_loss is not None:
            loss += known_loss(scale)
        if impostor_loss is not None:
            loss += impostor_loss(scale)
        if loss < best_loss:
            best_scale, best_loss = scale, loss
    return best_scale


def _held_out_figures(scores: _Scores, head: RecognitionHead) -> dict[str, Any]:
    held = scores.held
    genuine, best_other = scores.genuine, scores.naming_other[held]
    nearest_own = genuine > best_other
    accepted = nearest_own & (genuine >= head.threshold)
    # As if no collected stranger had raised anyone's threshold: what the version does of its own
    # doing; with the margins, people lose photos because an admin asked for it ("Not <name>").
    # Nearest as similarities too: compared as decision scores, a photo whose person's margin was
    # raised lost to a neighbour without one, and counted as lost "without margins".
    similarity = genuine + head.margins[scores.codes[held]]
    unmargined = (similarity > scores.naming_other_similarity[held]) & (similarity >= head.threshold)
    return {
        "method": "leave-one-out over enrolled photos",
        "held_out_photos": int(held.sum()),
        "scored_photos": len(scores.codes),  # every photo, or a fixed sample above MAX_SCORED_PHOTOS
        "photos": scores.photos,
        "people": len(head.labels),
        "top1": float(nearest_own.mean()) if held.any() else None,
        "accept_rate": float(accepted.mean()) if held.any() else None,
        "accept_rate_without_margins": float(unmargined.mean()) if held.any() else None,
        "raised_people": int((head.margins > 0).sum()),
        "false_accept_rate": float((scores.impostor >= head.threshold).mean())
        if len(scores.impostor)
        else None,
        "estimated_unknown_reject": estimated_unknown_reject(scores, head.threshold),
        "suspected_duplicates": scores.suspects,
    }


QUALITY_BINS = 40
QUALITY_CURVE_POINTS = 61
QUALITY_WORST_PEOPLE = 10


def _quality_figures(scores: _Scores, head: RecognitionHead) -> dict[str, Any]:
    """What a version's quality view plots, from enrolled photos alone (the calibration's own scores).

    - ``histogram``: counts of held-out genuine scores (a photo against its own person rebuilt without
      it) and of impostor scores (a photo's best other person), on shared ``edges``;
    - ``curve``: as the threshold moves, the estimated share of known photos accepted and of strangers
      rejected (the estimators calibration uses), with the version's own ``threshold``;
    - ``people``: those whose photos agree least with each other (lowest mean held-out genuine
      score first): candidates for better photos.
    """
    codes = scores.codes
    values = np.concatenate([scores.genuine, scores.impostor])
    low = float(min(values.min(), head.threshold) if len(values) else head.threshold) - 0.01
    edges = np.linspace(max(-1.0, low), 1.0, QUALITY_BINS + 1)
    curve = [
        {
            "threshold": round(float(threshold), 4),
            "known_accept": _estimated_known_accept(scores, float(threshold)),
            "unknown_reject": round(estimated_unknown_reject(scores, float(threshold)), 4),
        }
        for threshold in np.linspace(edges[0], 1.0, QUALITY_CURVE_POINTS)
    ]
    held_codes = codes[scores.held]
    people = []
    for code in np.unique(held_codes):
        # How well their photos agree: similarities, not decision scores (a collected stranger's
        # margin made someone with good photos the first "candidate for better photos").
        own = scores.genuine[held_codes == code] + head.margins[code]
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
