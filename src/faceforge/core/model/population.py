"""How faces of unrelated people score against a person: the population model behind calibration.

A stranger is a random photo of a random person nobody enrolled. Their embedding ``x`` (a unit vector
of this release's embedder) is modelled as Gaussian, ``x ~ N(mean, cov)`` (not renormalised: drawn
faces normalised to unit length gave tails too thin for real strangers at 5 to 20 people), with
``mean`` and ``cov`` fitted once on a population of photos of many people (``building.population_fit``,
from the shared development photos; the fitted numbers ship with faceforge, never the photos or their
embeddings). ``cov`` is widened by a factor found by cross-validation over the population's own people
(``facts["stranger_spread"]``, about 1.08): fitted as is, the model described the people it was fitted
on better than the next ones, and small galleries of unseen people rejected 95 % of unseen strangers
where it estimated 97 %.
Each person counts once in the fit, however many photos they have, as a stranger walking past a
camera is a random *person* first.

Why this model: against a person's prototype ``p`` (the unit mean of their enrolled embeddings) the
stranger scores ``s = x . p``, which is then ``N(mean . p, p' cov p)``, and against a gallery of C
people the scores are jointly Gaussian with covariance ``P cov P'``. The joint law matters: unrelated
faces already score ~0.7 here, and a stranger who looks "typical" scores high against everyone, so
the C scores are strongly correlated and the best of them is far from the maximum of C independent
draws. A stranger is rejected when ``max_c (s_c - margin_c) < threshold``; its probability, for the
actual prototypes of the gallery, is estimated by drawing ``STRANGER_DRAWS`` strangers from the model
with a fixed seed (the same standard normal numbers for every gallery, so a version is reproducible;
one matrix product per gallery). This holds from one person (where
the gallery itself has no impostor evidence at all) to 10,000.

``cov`` is stored as a factor ``L`` (``cov = L L'``, eigenvectors scaled by the square roots of their
eigenvalues), shrunk towards a multiple of the identity by the Ledoit-Wolf rule: a few hundred people
estimate a 640-dimensional covariance poorly along the directions nobody in the population varies.

The model also states how two photos compare (``pair``): a logistic ``P(same person | cosine)``
whose slope is fitted on the population's same-person and different-person photo pairs and whose
midpoint (one half) is where one different-person pair in 1,000 scores above it. Face to face
verification (CompreFace's verify, DeepStack's match) uses it, so whether two photos show one
person does not depend on who else is enrolled.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from faceforge.core.errors import TrainingError

FloatArray = npt.NDArray[np.float32]

MODEL_FILE = "population.safetensors"
STRANGER_DRAWS = 20_000  # simulated strangers per estimate: +-0.12 points at a 97 % rejection
DRAW_SEED = 20_260_101
DRAW_BLOCK = 2_048  # strangers scored at once: a (2048, C) float32 block, 80 MB at C = 10,000


@dataclass(frozen=True, slots=True)
class PairCalibration:
    """``P(same person | cosine s) = 1 / (1 + exp(-slope * (s - midpoint)))`` for two single photos."""

    slope: float
    midpoint: float

    def probability(self, cosine: float) -> float:
        z = self.slope * (cosine - self.midpoint)
        # Written so that neither branch can overflow (z is large for very alike or unlike photos).
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)


@dataclass(frozen=True, slots=True)
class SimulatedStrangers:
    """Strangers drawn from the population model and scored against one gallery (``simulate``)."""

    best: FloatArray  # (K,) best score over the people whose level it reaches (-inf: none)
    runner_up: FloatArray  # (K,) second best such score (-inf with one person)
    best_class: npt.NDArray[np.int64]  # (K,) whose the best score is
    rows: FloatArray  # (R, C) the first strangers' similarities to everyone


@dataclass(frozen=True, slots=True)
class PopulationModel:
    """The fitted stranger model of one embedder (see the module docstring)."""

    embedder: str
    mean: FloatArray  # (D,)
    factor: FloatArray  # (D, K): cov = factor @ factor.T
    pair: PairCalibration
    # How much one person's photos vary in their score against someone else's prototype (standard
    # deviation): how far a known stranger's next photo may land from their photos seen so far.
    within_person_sd: float
    facts: dict[str, Any]  # what it was fitted on: people, photos, sources, shrinkage

    @property
    def dimension(self) -> int:
        return int(self.mean.shape[0])

    def score_moments(self, prototypes: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Mean and standard deviation of one stranger's score against each of ``(C, D)`` prototypes."""
        projected = prototypes @ self.factor
        means = np.asarray(prototypes @ self.mean, np.float32)
        deviations = np.sqrt(np.einsum("ck,ck->c", projected, projected)).astype(np.float32)
        return means, deviations

    def simulate(
        self, prototypes: FloatArray, levels: FloatArray | None = None, *, keep_rows: int = 0
    ) -> SimulatedStrangers:
        """``STRANGER_DRAWS`` strangers drawn from the model and scored against a gallery.

        ``prototypes`` is ``(C, D)`` unit rows. ``levels`` (per person, -inf for most) are floors a
        score must reach to count for that person: a person whose threshold a collected stranger
        raised (``core.model.head``). A drawn stranger is accepted at threshold ``t`` exactly when its
        ``best`` reaches ``t``.
        """
        if prototypes.ndim != 2 or prototypes.shape[1] != self.dimension or not len(prototypes):
            raise TrainingError("the population model needs (C, D) prototypes of its own embedder")
        classes = len(prototypes)
        offsets = np.asarray(prototypes @ self.mean, np.float32)
        loadings = np.ascontiguousarray((prototypes @ self.factor).T, dtype=np.float32)  # (K, C)
        standard = _standard_draws(self.factor.shape[1])
        best = np.empty(STRANGER_DRAWS, np.float32)
        runner_up = np.full(STRANGER_DRAWS, -np.inf, np.float32)
        best_class = np.zeros(STRANGER_DRAWS, np.int64)
        rows: list[FloatArray] = []
        for start in range(0, STRANGER_DRAWS, DRAW_BLOCK):
            stop = min(start + DRAW_BLOCK, STRANGER_DRAWS)
            scores = standard[start:stop] @ loadings
            scores += offsets
            if start < keep_rows:
                rows.append(scores[: keep_rows - start].copy())
            if levels is not None:
                scores[scores < levels[None, :]] = -np.inf
            index = scores.argmax(axis=1)
            local = np.arange(stop - start)
            best[start:stop] = scores[local, index]
            best_class[start:stop] = index
            if classes > 1:
                scores[local, index] = -np.inf
                runner_up[start:stop] = scores.max(axis=1)
        kept = np.concatenate(rows) if rows else np.zeros((0, classes), np.float32)
        return SimulatedStrangers(best=best, runner_up=runner_up, best_class=best_class, rows=kept)

    def to_bytes(self) -> bytes:
        metadata = {
            "faceforge_population": json.dumps(
                {
                    "embedder": self.embedder,
                    "pair": {"slope": self.pair.slope, "midpoint": self.pair.midpoint},
                    "within_person_sd": self.within_person_sd,
                    "facts": self.facts,
                },
                sort_keys=True,
            )
        }
        data: bytes = save_tensors(
            {
                "mean": np.ascontiguousarray(self.mean, np.float32),
                "factor": np.ascontiguousarray(self.factor, np.float32),
            },
            metadata,
        )
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> PopulationModel:
        tensors = load_tensors(data)
        numbers = json.loads(_safetensors_metadata(data)["faceforge_population"])
        return cls(
            embedder=str(numbers["embedder"]),
            mean=np.asarray(tensors["mean"], np.float32),
            factor=np.asarray(tensors["factor"], np.float32),
            pair=PairCalibration(float(numbers["pair"]["slope"]), float(numbers["pair"]["midpoint"])),
            within_person_sd=float(numbers["within_person_sd"]),
            facts=dict(numbers["facts"]),
        )


@cache
def _standard_draws(dimension: int) -> FloatArray:
    """The ``(STRANGER_DRAWS, dimension)`` standard normal numbers behind every simulation: the same
    for every gallery (a version is reproducible), drawn once per process (0.3-2 s of work)."""
    draws = np.random.default_rng(DRAW_SEED).standard_normal((STRANGER_DRAWS, dimension), dtype=np.float32)
    draws.setflags(write=False)
    return draws


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` map of a safetensors file (an 8-byte little-endian header length, then
    the JSON header), which ``safetensors.numpy.load`` does not return."""
    if len(data) < 8:
        raise TrainingError("the population model file is truncated")
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict):
        raise TrainingError("the population model file has no metadata")
    return {str(key): str(value) for key, value in metadata.items()}


@cache
def shipped_model() -> PopulationModel:
    """The population model that ships with this release (``core/model/population.safetensors``),
    fitted for this release's embedder (another embedder's faces would be scored against a foreign
    population: refit with ``building.population_fit`` when the embedder changes)."""
    from faceforge.core.embedding_space import EMBEDDER_NAME  # torch-free facts about embeddings

    data = resources.files("faceforge.core.model").joinpath(MODEL_FILE).read_bytes()
    model = PopulationModel.from_bytes(data)
    if model.embedder != EMBEDDER_NAME:
        raise TrainingError(
            f"the shipped population model is for {model.embedder}, this release embeds with {EMBEDDER_NAME}"
        )
    return model
