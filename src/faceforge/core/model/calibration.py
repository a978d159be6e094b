"""The share of strangers a gallery turns away at a threshold, from every source of evidence there is.

Three sources, in order of how much of them there always is:

1. **The population model** (``core.model.population``): strangers drawn from a model of unrelated
   faces, scored against this gallery's own prototypes. Always there, from one person to 10,000,
   and never moved by what is enrolled, duplicates included. ``R_model(t)``: the share of drawn
   strangers whose best decision score is below ``t``.
2. **The gallery's own photos**, each a stranger to everyone else enrolled (suspected duplicates left
   out). They say how this gallery's people differ from the model's population (a family looks
   alike; a population of news photos may not look like a user's). Their empirical share
   ``E_gallery(t)`` is compared with what the model predicts for the same photos, ``M_gallery(t)``
   (each drawn stranger's best score over everyone but the photo's own person, weighted by how many
   photos each person has).
3. **The strangers collection**: real strangers' photos, scored against everyone. Each stranger's
   photos meet the raised thresholds (``core.model.head``) as the *other* people collected set them
   (leave-one-out, strangers who look like one person held out together), as a stranger the
   collection has not seen would; their share ``E_strangers(t)`` is compared with the model's at the
   same threshold with every raised threshold in place. Measured against the thresholds their own
   photos raised, the strangers would be rejected by construction and vouch for a lower threshold
   than other strangers bear out; measured with no raised thresholds at all, they would say how the
   model fits at the bare threshold, which a collection puts at the floor in a small gallery, far
   from where the raised thresholds decide. Holding a stranger out only lowers levels, so comparing
   with the model at every level biases the estimate down (a threshold as high or higher: the safe
   side), by each stranger's weight times what their own level moves of the model; a reviewer's
   simulation put it at 0.17 points at most (two to five people, each raised by their own nearest
   stranger, threshold at the floor), 0.02 at 10 to 50 people, none for a random collection.

A person's threshold may be raised to a level of their own (``levels``): a score counts for them only
when it reaches it, in the drawn strangers and the gallery's photos alike.

The estimate moves the model by the evidence's disagreement with it, each source weighted by its size
against a prior worth ``PRIOR_PHOTOS`` photos:

    R(t) = R_model(t) + (n_g (E_gallery - M_gallery) + n_s (E_strangers - R_model)) / (n_g + n_s + n_0)

with ``n_0 = PRIOR_PHOTOS``,

so a handful of photos barely moves it (a small gallery falls back to the population, never to a few
samples) and a thousand photos mostly decide. ``PRIOR_PHOTOS`` = 200: a share near 97 % measured on
200 photos has a standard error of 1.2 points, about the population model's own error against real
strangers on the development photos (at 50 to 201 people the model alone estimates 97 % where 98 to
98.5 % are rejected; at 1 to 5 unseen people, where 96 to 97 % are). Strangers count
once each, however many photos they have, and strangers who look like one person count once
together: the mailman added five times from Try it is one stranger's evidence, not five.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faceforge.core.model.population import SimulatedStrangers

FloatArray = npt.NDArray[np.float32]

PRIOR_PHOTOS = 200.0
BISECTION_STEPS = 40


def _share_below(sorted_scores: npt.NDArray[np.floating], threshold: float) -> float:
    if not len(sorted_scores):
        return 0.0
    return float(np.searchsorted(sorted_scores, threshold, side="left")) / len(sorted_scores)


@dataclass(slots=True)
class _WeightedScores:
    """An empirical distribution with weights: ascending scores and their cumulative weights."""

    scores: npt.NDArray[np.float64]
    cumulative: npt.NDArray[np.float64]

    @classmethod
    def of(cls, scores: npt.NDArray[np.floating], weights: npt.NDArray[np.floating]) -> _WeightedScores:
        order = np.argsort(scores, kind="stable")
        cumulative = np.cumsum(np.asarray(weights, np.float64)[order])
        total = cumulative[-1] if len(cumulative) else 1.0
        return cls(np.asarray(scores, np.float64)[order], cumulative / (total or 1.0))

    def share_below(self, threshold: float) -> float:
        count = int(np.searchsorted(self.scores, threshold, side="left"))
        return float(self.cumulative[count - 1]) if count else 0.0


@dataclass(slots=True)
class StrangerEstimate:
    """``R(t)`` of the module docstring for one gallery (prototypes and levels fixed)."""

    model: npt.NDArray[np.float32]  # drawn strangers' best counting score (levels applied), ascending
    gallery_model: _WeightedScores | None  # M_gallery
    gallery: npt.NDArray[np.float32]  # enrolled photos' best counting score over other people, ascending
    strangers: _WeightedScores | None  # collected strangers' photos' best counting score, held out
    stranger_count: int

    @classmethod
    def build(
        cls,
        simulated: SimulatedStrangers,
        *,
        gallery_best_other: FloatArray,
        photos_per_class: npt.NDArray[np.int64],
        stranger_best: FloatArray,
        stranger_owner: npt.NDArray[np.int64],
    ) -> StrangerEstimate:
        """``gallery_best_other``: each kept enrolled photo's best score over the other people whose
        level it reaches; ``photos_per_class``: how many of those photos each person has;
        ``stranger_best``: each collected stranger photo's best score over the people whose level,
        as the other strangers set it, it reaches (module docstring); ``stranger_owner`` whose
        photo it is, strangers who look like one person under one label (``n_s`` counts labels)."""
        gallery_model = None
        if len(gallery_best_other):
            # A drawn stranger stands for a photo of person c: its best over everyone but c is the
            # runner-up when c is its best, else its best. With two people or more, a runner-up of
            # -inf is a score below every level, rejected as the gallery's own such photos are (left
            # out, a stranger below everyone's level lost the weight of its first person's photos).
            counts = photos_per_class.astype(np.float64)
            own = counts[simulated.best_class]
            usable = np.isfinite(simulated.runner_up) | (len(counts) > 1)
            gallery_model = _WeightedScores.of(
                np.concatenate([simulated.best, simulated.runner_up[usable]]),
                np.concatenate([counts.sum() - own, own[usable]]),
            )
        strangers = None
        if len(stranger_best):
            per_owner = np.bincount(stranger_owner)
            strangers = _WeightedScores.of(stranger_best, 1.0 / per_owner[stranger_owner])
        return cls(
            model=np.sort(simulated.best),
            gallery_model=gallery_model,
            gallery=np.sort(gallery_best_other.astype(np.float32)),
            strangers=strangers,
            stranger_count=len(np.unique(stranger_owner)) if len(stranger_owner) else 0,
        )

    @property
    def gallery_weight(self) -> float:
        return len(self.gallery) / (len(self.gallery) + self.stranger_count + PRIOR_PHOTOS)

    @property
    def strangers_weight(self) -> float:
        return self.stranger_count / (len(self.gallery) + self.stranger_count + PRIOR_PHOTOS)

    def model_reject(self, threshold: float) -> float:
        return _share_below(self.model, threshold)

    def reject(self, threshold: float) -> float:
        """The estimated share of strangers whose best decision score stays below ``threshold``."""
        model = self.model_reject(threshold)
        shift = 0.0
        if self.gallery_model is not None:
            gallery = _share_below(self.gallery, threshold) - self.gallery_model.share_below(threshold)
            shift += self.gallery_weight * gallery
        if self.strangers is not None:
            shift += self.strangers_weight * (self.strangers.share_below(threshold) - model)
        return float(min(1.0, max(0.0, model + shift)))

    def threshold_for(self, target: float, low: float, high: float = 1.0) -> float:
        """The smallest threshold in ``[low, high]`` whose estimate reaches ``target`` (bisection)."""
        if self.reject(low) >= target:
            return low
        for _ in range(BISECTION_STEPS):
            middle = (low + high) / 2
            if self.reject(middle) >= target:
                high = middle
            else:
                low = middle
        return high

    def evidence(self, threshold: float) -> dict[str, float | int | None]:
        """How much each source weighed, and what each says on its own at ``threshold``, for the
        manifest: ``gallery_reject`` is the share of the gallery's own photos, each a stranger to
        everyone else, rejected (``E_gallery``), beside what the model predicts for those same photos
        (``gallery_model_reject``); ``strangers_reject`` the collected strangers' share, held out.
        Where the estimate and a user's own strangers disagree, these say which evidence it followed:
        ``R = model + gallery_weight (gallery - gallery_model) + strangers_weight (strangers - model)``
        (module docstring), each term here at the threshold the version uses."""
        gallery_model = self.gallery_model
        return {
            "model_strangers": len(self.model),
            "gallery_photos": len(self.gallery),
            "gallery_weight": round(self.gallery_weight, 4),
            "gallery_reject": _rounded(_share_below(self.gallery, threshold) if len(self.gallery) else None),
            "gallery_model_reject": _rounded(
                None if gallery_model is None else gallery_model.share_below(threshold)
            ),
            "collected_strangers": self.stranger_count,
            "strangers_weight": round(self.strangers_weight, 4),
            "strangers_reject": _rounded(
                None if self.strangers is None else self.strangers.share_below(threshold)
            ),
        }


def _rounded(share: float | None) -> float | None:
    return None if share is None else round(share, 4)
