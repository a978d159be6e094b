"""Open-set recognition head: cosine similarity to class prototypes, with an explicit "unknown".

The head scores an embedding ``e`` (unit vector) against each class prototype ``p_c`` (the normalised
mean of that class's enrolled embeddings): ``s_c = e . p_c``. Each person also has a margin ``m_c``
(0 unless a collected stranger came close to them, see below). The class with the best decision score
``s_c - m_c`` is the answer when that score reaches ``threshold``; otherwise the face is unknown.
Probabilities are ``softmax(scale * [s_1 - m_1 .. s_C - m_C, threshold])``: the last entry is
"unknown", and its logit sits exactly at the threshold, so argmax over the probabilities makes the
same decision (this is what gets baked into exported models: the margins are the class biases).

How the prototypes, margins, threshold and scale are chosen is fitting, done where versions are
built (``building.head_fitting``); this module is what every process that recognises needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from faceforge.core.errors import TrainingError

FloatArray = npt.NDArray[np.float32]


@dataclass(slots=True)
class Calibration:
    """How the threshold and scale were chosen, with the statistics behind them (stored with models)."""

    method: str  # "population", "population+gallery", "population+gallery+strangers", ...
    genuine_count: int
    impostor_count: int
    genuine_mean: float | None
    impostor_mean: float | None
    target_unknown_reject: float | None = None
    estimated_unknown_reject: float | None = None  # strangers rejected at the threshold
    estimated_known_accept: float | None = None  # held-out known photos accepted as the right person
    suspected_duplicates: list[dict[str, Any]] = field(default_factory=list)
    # The population model's own estimate at the threshold, before the gallery's and the strangers'
    # evidence moved it; what each source weighed; the population it was fitted on.
    model_unknown_reject: float | None = None
    evidence: dict[str, Any] | None = None
    population: dict[str, Any] | None = None
    raised_margins: int = 0  # people whose threshold a collected stranger raised

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class Match:
    index: int | None  # class index, or None when unknown
    # The cosine similarity to the person with the best decision score (similarity less their margin):
    # the named person's, or the nearest candidate's when unknown; not always the largest similarity
    # when a collected stranger raised someone's margin.
    similarity: float
    confidence: float  # probability of the best class (or of unknown when index is None)


@dataclass(slots=True)
class RecognitionHead:
    labels: list[str]
    prototypes: FloatArray  # (C, D), unit rows
    threshold: float
    scale: float
    calibration: Calibration
    counts: list[int] = field(default_factory=list)
    # Per person, how far above the threshold a face must score to be named (0 for most people): a
    # stranger from the strangers collection who scores close to someone raises that person's margin.
    margins: FloatArray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self) -> None:
        if len(self.margins) == 0:
            self.margins = np.zeros(len(self.labels), np.float32)
        if self.margins.shape != (len(self.labels),):
            raise TrainingError("one margin per class is needed")

    def restricted(self, keep: list[int]) -> RecognitionHead:
        """This head with only the classes at ``keep``: the same threshold, scale and margins, so each
        remaining person is decided as before and a face only the others matched is unknown."""
        return RecognitionHead(
            labels=[self.labels[i] for i in keep],
            prototypes=self.prototypes[keep],
            threshold=self.threshold,
            scale=self.scale,
            calibration=self.calibration,
            counts=[self.counts[i] for i in keep] if self.counts else [],
            margins=self.margins[keep],
        )

    def similarities(self, embeddings: FloatArray) -> FloatArray:
        """``(N, D)`` unit embeddings -> ``(N, C)`` cosine similarities."""
        return np.asarray(embeddings @ self.prototypes.T, dtype=np.float32)

    def decision_scores(self, embeddings: FloatArray) -> FloatArray:
        """``(N, C)`` similarities less each person's margin: the best of these, compared with the
        threshold, decides (and is what the exported models' logits are, divided by the scale)."""
        return np.asarray(self.similarities(embeddings) - self.margins[None, :], np.float32)

    def probabilities(self, embeddings: FloatArray) -> FloatArray:
        """``(N, C + 1)`` probabilities over the classes and, last, "unknown"."""
        scores = self.decision_scores(embeddings)
        logits = self.scale * np.concatenate(
            [scores, np.full((len(scores), 1), self.threshold, np.float32)], 1
        )
        return _softmax(logits).astype(np.float32)

    def predict(self, embeddings: FloatArray, *, threshold: float | None = None) -> list[Match]:
        """Best class per embedding, or ``None`` when its decision score (similarity less the
        person's margin) is below the threshold."""
        limit = self.threshold if threshold is None else threshold
        sims = self.similarities(embeddings)
        scores = self.decision_scores(embeddings)
        probs = self.probabilities(embeddings)
        matches = []
        for row_sims, row_scores, row_probs in zip(sims, scores, probs, strict=True):
            if not len(row_scores):  # no class left (every person of a version deleted): unknown
                matches.append(Match(None, -1.0, float(row_probs[-1])))
                continue
            best = int(np.argmax(row_scores))
            known = bool(row_scores[best] >= limit)
            confidence = row_probs[best] if known else row_probs[-1]
            matches.append(Match(best if known else None, float(row_sims[best]), float(confidence)))
        return matches


def _softmax(logits: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    result: npt.NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
    return result
