"""Fit the population model (``core.model.population``) from folders of photos, one folder per person.

Run once per embedder, by a developer, and commit the result (a few hundred KB of fitted numbers):

    F=../shared/faces; python -m faceforge.building.population_fit $F/lfw_dev/known $F/lfw_dev/unknown \\
        $F/krasserm_lfw10 ... --out src/faceforge/core/model/population.safetensors

(the exact list of folders behind the shipped file is in its ``facts``).

Each folder given holds one sub-folder per person, or loose photos of one person each (a folder of
strangers). People with the same folder name in two sources are the same person only within a source.
The photos are analysed by the service's own pipeline (largest face); photos without a face are left
out. The fit is deterministic: the same photos give the same bytes.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faceforge.core.errors import TrainingError
from faceforge.core.model.population import FloatArray, PairCalibration, PopulationModel

log = logging.getLogger(__name__)

WITHIN_PROTOTYPES = 50
# The stranger spread's cross-validation (``_stranger_spread``): galleries of these sizes, drawn from
# one half of the population's people, scored by a model fitted on the other half.
SPREAD_SIZES = (1, 2, 5, 10)
SPREAD_GALLERIES = 10  # per size and half
SPREAD_ENROL = 5  # photos per enrolled person, as users enrol
SPREAD_DRAWS = 20_000
SPREAD_TARGET = 0.97  # the default operating point (Settings.target_unknown_reject)
SPREAD_SEED = 11
SPREAD_MIN_PEOPLE = 50  # per half: fewer cannot fit the half's model, let alone test it
IMPOSTOR_PAIRS = 400_000  # different-person pairs drawn for the pair calibration
PAIR_SEED = 7
PAIR_FALSE_MATCH = 0.001
PAIR_BLOCK = 20_000  # pairs scored at once (two 51 MB gathers)


def _ledoit_wolf(
    centred: FloatArray, weights: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], float]:
    """Weighted covariance shrunk towards ``(trace / D) I`` with the Ledoit-Wolf weight."""
    rows = centred.astype(np.float64)
    sample = (rows * weights[:, None]).T @ rows
    dimension = rows.shape[1]
    level = float(np.trace(sample)) / dimension
    target_distance = float(((sample - level * np.eye(dimension)) ** 2).sum())
    squared_norms = (rows**2).sum(axis=1)
    quadratic = ((rows @ sample) * rows).sum(axis=1)
    spread = squared_norms**2 - 2 * quadratic + float((sample**2).sum())
    estimate_noise = float((weights**2 * spread).sum())
    shrinkage = min(1.0, estimate_noise / target_distance) if target_distance > 0 else 1.0
    return (1 - shrinkage) * sample + shrinkage * level * np.eye(dimension), shrinkage


def _pair_scores(
    embeddings: FloatArray, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Cosines of the pairs ``(a[i], b[i])``, ``PAIR_BLOCK`` at a time: gathering all 400,000 impostor
    pairs at once held two 1 GB copies of the rows."""
    scores = [
        np.einsum(
            "nd,nd->n", embeddings[a[start : start + PAIR_BLOCK]], embeddings[b[start : start + PAIR_BLOCK]]
        )
        for start in range(0, len(a), PAIR_BLOCK)
    ]
    return np.concatenate(scores).astype(np.float64) if scores else np.zeros(0)


def _pair_calibration(
    embeddings: FloatArray, people: npt.NDArray[np.int64]
) -> tuple[PairCalibration, dict[str, Any]]:
    """Logistic ``P(same | cosine)``: its slope from every same-person pair and a sample of
    different-person pairs, each side weighted to one half, by Newton's method; its midpoint at the
    different-person pairs' ``1 - PAIR_FALSE_MATCH`` quantile."""
    same_a, same_b = [], []
    for person in np.unique(people):
        rows = np.flatnonzero(people == person)
        upper = np.triu_indices(len(rows), 1)
        same_a.append(rows[upper[0]])
        same_b.append(rows[upper[1]])
    genuine_a, genuine_b = np.concatenate(same_a), np.concatenate(same_b)
    if not len(genuine_a):
        raise TrainingError("the population needs some people with two or more photos")
    random = np.random.default_rng(PAIR_SEED)
    a = random.integers(0, len(embeddings), IMPOSTOR_PAIRS * 2)
    b = random.integers(0, len(embeddings), IMPOSTOR_PAIRS * 2)
    different = people[a] != people[b]
    a, b = a[different][:IMPOSTOR_PAIRS], b[different][:IMPOSTOR_PAIRS]
    genuine = _pair_scores(embeddings, genuine_a, genuine_b)
    impostor = _pair_scores(embeddings, a, b)
    scores = np.concatenate([genuine, impostor])
    targets = np.concatenate([np.ones(len(genuine)), np.zeros(len(impostor))])
    weights = np.concatenate(
        [np.full(len(genuine), 0.5 / len(genuine)), np.full(len(impostor), 0.5 / len(impostor))]
    )
    design = np.stack([scores, np.ones_like(scores)], axis=1)
    params = np.zeros(2)
    for _ in range(50):
        probability = 1.0 / (1.0 + np.exp(-(design @ params)))
        gradient = design.T @ (weights * (probability - targets))
        hessian = (design * (weights * probability * (1 - probability))[:, None]).T @ design
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        params -= step
        if np.abs(step).max() < 1e-10:
            break
    slope = float(params[0])
    # Verification answers "same person" at one half: placed where one different-person pair in
    # PAIR_FALSE_MATCH is called the same (equal priors would call 3 % of them the same).
    midpoint = float(np.quantile(impostor, 1.0 - PAIR_FALSE_MATCH))
    facts = {
        "same_person_pairs": len(genuine),
        "different_person_pairs": len(impostor),
        "same_person_mean": round(float(genuine.mean()), 4),
        "different_person_mean": round(float(impostor.mean()), 4),
    }
    facts["same_person_pairs_at_one_half"] = round(float((genuine >= midpoint).mean()), 4)
    return PairCalibration(slope=slope, midpoint=midpoint), facts


def _within_person_sd(units: FloatArray, codes: npt.NDArray[np.int64]) -> float:
    """Pooled standard deviation of one person's photos' scores against other people's prototypes
    (up to ``WITHIN_PROTOTYPES`` of them per person, drawn with a fixed seed)."""
    people = int(codes.max()) + 1
    sums = np.zeros((people, units.shape[1]), np.float64)
    np.add.at(sums, codes, units)
    prototypes = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    counts = np.bincount(codes, minlength=people)
    random = np.random.default_rng(PAIR_SEED)
    squares, degrees = 0.0, 0
    for person in np.flatnonzero(counts >= 2):
        others = np.flatnonzero(np.arange(people) != person)
        chosen = random.choice(others, min(WITHIN_PROTOTYPES, len(others)), replace=False)
        scores = units[codes == person] @ prototypes[chosen].T
        squares += float(((scores - scores.mean(axis=0)) ** 2).sum())
        degrees += (len(scores) - 1) * scores.shape[1]
    if not degrees:
        raise TrainingError("the population needs some people with two or more photos")
    return math.sqrt(squares / degrees)


def _gaussian(
    units: FloatArray, codes: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """Mean, covariance factor and Ledoit-Wolf shrinkage of ``units``, each person weighing once."""
    counts = np.bincount(codes)
    weights = 1.0 / counts[codes]  # each person once, however many photos
    weights /= weights.sum()
    mean = (units.astype(np.float64) * weights[:, None]).sum(axis=0)
    covariance, shrinkage = _ledoit_wolf(units - mean.astype(np.float32), weights)
    values, vectors = np.linalg.eigh(covariance)
    return mean, vectors * np.sqrt(np.clip(values, 0.0, None))[None, :], shrinkage


def _stranger_spread(units: FloatArray, codes: npt.NDArray[np.int64]) -> tuple[float, dict[str, Any]]:
    """How much wider than fitted the model's stranger spread must be to hold on people it was not
    fitted on: the factor ``k`` (the covariance factor times ``k``) at which a model fitted on one half
    of the population's people, scoring small galleries of the other half, rejects as many of that
    half's other people (each person weighing once) at its own ``SPREAD_TARGET`` threshold as it
    estimates, averaged over both halves.

    Why: a Gaussian fitted on a few hundred people describes those people's faces better than the
    next ones'. On lfw_dev split in two by person, the model of one half estimated 97 % for galleries
    of 1 to 5 people of the other half, where 95 % of that half's strangers were rejected."""
    people = int(codes.max()) + 1
    if people < 2 * SPREAD_MIN_PEOPLE:
        return 1.0, {"stranger_spread": 1.0, "stranger_spread_note": "too few people to cross-validate"}
    order = np.random.default_rng(SPREAD_SEED).permutation(people)
    halves = (order[: people // 2], order[people // 2 :])
    draws = (
        np.random.default_rng(SPREAD_SEED).standard_normal((SPREAD_DRAWS, units.shape[1])).astype(np.float32)
    )
    galleries: list[
        tuple[
            npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float64]
        ]
    ] = []
    for fitted, held in (halves, halves[::-1]):
        mean, factor, _ = _gaussian(*_subset(units, codes, fitted))
        counts = np.bincount(codes, minlength=people)
        enrollable = held[counts[held] >= 2]
        random = np.random.default_rng(SPREAD_SEED + len(galleries))
        for size in SPREAD_SIZES:
            for _ in range(SPREAD_GALLERIES):
                chosen = random.choice(enrollable, min(size, len(enrollable)), replace=False)
                prototypes = np.stack(
                    [_unit(units[codes == person][:SPREAD_ENROL].sum(axis=0)) for person in chosen]
                )
                strangers = np.isin(codes, held) & ~np.isin(codes, chosen)
                real = (units[strangers] @ prototypes.T).max(axis=1)
                weights = 1.0 / counts[codes[strangers]]
                centre = (prototypes @ mean).astype(np.float32)
                spread = draws @ (factor.T @ prototypes.T).astype(np.float32)  # (draws, C)
                galleries.append((centre, spread, real.astype(np.float32), weights / weights.sum()))

    def rejected(k: float) -> float:
        shares = []
        for centre, spread, real, weights in galleries:
            threshold = np.quantile((centre + k * spread).max(axis=1), SPREAD_TARGET)
            shares.append(float(weights[real < threshold].sum()))
        return float(np.mean(shares))

    low, high = 0.5, 3.0
    for _ in range(30):  # rejected(k) grows with k
        middle = (low + high) / 2
        if rejected(middle) >= SPREAD_TARGET:
            high = middle
        else:
            low = middle
    facts = {
        "stranger_spread": round(high, 4),
        "stranger_spread_rejected_as_fitted": round(rejected(1.0), 4),
        "stranger_spread_galleries": len(galleries),
    }
    return high, facts


def _subset(
    units: FloatArray, codes: npt.NDArray[np.int64], people: npt.NDArray[np.int64]
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    rows = np.isin(codes, people)
    _, renumbered = np.unique(codes[rows], return_inverse=True)
    return units[rows], renumbered.astype(np.int64)


def _unit(vector: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def fit_population(
    embeddings: FloatArray, people: Sequence[str], *, embedder: str, sources: Sequence[str] = ()
) -> PopulationModel:
    """The population model from ``(N, D)`` unit embeddings and whose each one is (any labels)."""
    if len(embeddings) != len(people) or len(embeddings) < 2:
        raise TrainingError("the population needs two or more photos, each with its person")
    names, codes = np.unique(np.asarray(people), return_inverse=True)
    units = (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float32)
    mean, factor, shrinkage = _gaussian(units, codes.astype(np.int64))
    spread, spread_facts = _stranger_spread(units, codes.astype(np.int64))
    factor = factor * spread
    pair, pair_facts = _pair_calibration(units, codes.astype(np.int64))
    facts = {
        "people": len(names),
        "photos": len(units),
        "shrinkage": round(shrinkage, 6),
        "sources": list(sources),
        **spread_facts,
        **pair_facts,
    }
    return PopulationModel(
        embedder=embedder,
        mean=mean.astype(np.float32),
        factor=factor.astype(np.float32),
        pair=pair,
        within_person_sd=_within_person_sd(units, codes.astype(np.int64)),
        facts=facts,
    )


def population_photos(folders: Sequence[Path]) -> list[tuple[str, Path]]:
    """``(person, photo)`` for every photo below the folders (see the module docstring)."""
    from faceforge.core.dataset import image_files

    found: list[tuple[str, Path]] = []
    for folder in folders:
        if not folder.is_dir():
            raise TrainingError(f"not a folder: {folder}")
        for photo in image_files(folder):
            relative = photo.relative_to(folder)
            person = relative.parts[0] if len(relative.parts) > 1 else relative.stem
            found.append((f"{folder.name}/{person}", photo))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    from faceforge.core.config import Settings
    from faceforge.core.embedding_space import EMBEDDER_NAME
    from faceforge.serving.vision.pipeline import FacePipeline, PhotoError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        photos = population_photos(arguments.folders)
        pipeline = FacePipeline(Settings())
        results = pipeline.analyze_many([path for _, path in photos], single_face=False)
        vectors, people = [], []
        for (person, _), result in zip(photos, results, strict=True):
            if isinstance(result, PhotoError) or not result.faces or result.faces[0].embedding is None:
                continue
            vectors.append(result.faces[0].embedding)
            people.append(person)
        sources = sorted({str(folder.as_posix()).split("faces/")[-1] for folder in arguments.folders})
        model = fit_population(np.stack(vectors), people, embedder=EMBEDDER_NAME, sources=sources)
    except TrainingError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    arguments.out.write_bytes(model.to_bytes())
    log.info("%s: %s", arguments.out, model.facts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
