"""The population model holds on people it was not fitted on (issue 20).

lfw_dev is split by person: a population model is fitted, as ``building.population_fit`` fits the
shipped one, on half of its people (and half of its strangers), and small galleries of the other half
are calibrated with it and measured on the other half's strangers. Fitted as is, such a model
described its own people better than the next ones: galleries of 1 to 5 unseen people rejected about
95 % of unseen strangers where it estimated 97 %. The cross-validated stranger spread closes that gap.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from faceforge.building.head_fitting import fit_head
from faceforge.building.population_fit import fit_population
from faceforge.core.dataset import image_files
from faceforge.core.model.population import PopulationModel
from faceforge.serving.vision.face_input import FaceInputs, concatenate_inputs
from faceforge.serving.vision.pipeline import FacePipeline
from tests.conftest import FACES

LFW_DEV = FACES / "lfw_dev"
ENROL = 5
SIZES = (1, 2, 5)
GALLERIES = 10  # per size
TARGET = 0.97


def _embed(pipeline: FacePipeline, paths: list[Path]) -> tuple[np.ndarray, list[int]]:
    """The largest confident face of each photo that has one (as identification keeps them), and which
    of ``paths`` it came from. Only that face is embedded: LFW photos hold 1.15 faces on average, and
    the others' embeddings were 15 % of this module's minutes. Runs of photos on two threads, each
    detecting then embedding its run in one batch, as ``FacePipeline.analyze_many`` does."""
    min_score = pipeline.detector_settings.min_score

    def largest(path: Path) -> FaceInputs | None:
        image = pipeline.decode(path.read_bytes())
        faces = [face for face in pipeline.detect(image) if face.score >= min_score]
        return pipeline.inputs(image, [faces[0].box]) if faces else None

    def run(start: int) -> tuple[list[int], np.ndarray | None]:
        found = [(start + i, largest(path)) for i, path in enumerate(paths[start : start + RUN])]
        chosen = [(index, inputs) for index, inputs in found if inputs is not None]
        if not chosen:
            return [], None
        rows = pipeline.embedder.embed(concatenate_inputs([inputs for _, inputs in chosen]))
        return [index for index, _ in chosen], rows

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [(kept, rows) for kept, rows in pool.map(run, range(0, len(paths), RUN)) if rows is not None]
    kept = [index for indices, _ in runs for index in indices]
    return np.concatenate([rows for _, rows in runs]).astype(np.float32), kept


RUN = 8  # photos a thread detects before embedding their faces in one batch


@dataclass(frozen=True)
class Halves:
    population: PopulationModel  # fitted on the even-numbered people and strangers
    enrolled: dict[str, np.ndarray]  # the first photos of the odd-numbered people a gallery draws
    names: list[str]  # every odd-numbered person with more than ``ENROL`` photos, in name order
    strangers: np.ndarray  # the odd-numbered strangers


@pytest.fixture(scope="module")
def halves(pipeline: FacePipeline) -> Halves:
    people = sorted(p for p in (LFW_DEV / "known").iterdir() if p.is_dir())
    strangers = image_files(LFW_DEV / "unknown")
    fitted = [(p.name, photo) for p in people[0::2] for photo in image_files(p)]
    fitted += [(photo.stem, photo) for photo in strangers[0::2]]
    vectors, kept = _embed(pipeline, [photo for _, photo in fitted])
    population = fit_population(vectors, [fitted[i][0] for i in kept], embedder=pipeline.embedder.name)
    measured = [p for p in people[1::2] if len(image_files(p)) > ENROL]
    # Only the people some gallery draws (about half of them): the others' photos would be embedded
    # for nothing, and the draws depend on the number of people alone.
    drawn = {int(i) for chosen in _draws(len(measured)) for i in chosen}
    enrolled = {}
    for index, person in enumerate(measured):
        if index in drawn:
            rows, _ = _embed(pipeline, image_files(person)[:ENROL])
            enrolled[person.name] = rows
    unseen, _ = _embed(pipeline, strangers[1::2])
    return Halves(population, enrolled, [p.name for p in measured], unseen)


def _draws(people: int) -> list[np.ndarray]:
    """Which of ``people`` (indices in name order) each gallery enrols: ``GALLERIES`` of each size."""
    random = np.random.default_rng(20)
    return [random.choice(people, size, replace=False) for size in SIZES for _ in range(GALLERIES)]


def _galleries(halves: Halves) -> tuple[float, float]:
    """Mean strangers rejected and mean estimate over ``GALLERIES`` random galleries of each size."""
    rejected, estimated = [], []
    for chosen in _draws(len(halves.names)):
        people = [halves.names[i] for i in chosen]
        rows = np.concatenate([halves.enrolled[name] for name in people])
        labels = [name for name in people for _ in range(len(halves.enrolled[name]))]
        head = fit_head(rows, labels, target_unknown_reject=TARGET, population=halves.population)
        rejected.append(np.mean([m.index is None for m in head.predict(halves.strangers)]))
        estimated.append(head.calibration.estimated_unknown_reject or 0.0)
    return float(np.mean(rejected)), float(np.mean(estimated))


def test_small_galleries_of_unseen_people_reject_the_unseen_strangers_they_estimate(halves: Halves) -> None:
    assert halves.population.facts["stranger_spread"] > 1.0
    rejected, estimated = _galleries(halves)
    # Measured here: without the spread 0.954 rejected against an estimate of 0.970; with it 0.965
    # against 0.970. Each figure is a mean over 30 galleries of the same 250 strangers, so one stranger
    # more or less in a gallery moves it by 0.013 points: the bars sit midway between the two.
    assert rejected >= 0.959 and estimated - rejected <= 0.011, (rejected, estimated)
