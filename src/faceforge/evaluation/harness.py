"""The evaluation run behind ``faceforge eval``: the same pipeline and head the service uses."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.domain.errors import DatasetError
from faceforge.domain.faces import PhotoFaces
from faceforge.evaluation.dataset import image_files, split_dataset
from faceforge.training.head import fit_head
from faceforge.vision.pipeline import FacePipeline, PhotoError


@dataclass(frozen=True, slots=True)
class EvalOptions:
    dataset: Path
    enroll: int
    unknown: Path | None = None
    seed: int | None = None


def _largest_embedding(result: PhotoFaces | PhotoError) -> np.ndarray[Any, np.dtype[np.float32]] | None:
    if isinstance(result, PhotoError) or not result.faces:
        return None
    return result.faces[0].embedding


def evaluate(pipeline: FacePipeline, options: EvalOptions) -> dict[str, Any]:
    """Enrol, calibrate, probe and score. Returns the figures ``faceforge eval --json`` prints.

    Enrolment photos must pass the enrolment checks (one dominant usable face). Probes and unknown
    photos are recognised like ``identify`` does: their largest face is used. A probe without a face
    counts as a miss; unknown photos without a face are reported apart and not in the reject rate.
    """
    split = split_dataset(options.dataset, enroll=options.enroll, seed=options.seed)
    unknown_paths: list[Path] = []
    if options.unknown is not None:
        if not options.unknown.is_dir():
            raise DatasetError(f"unknown folder not found: {options.unknown}")
        unknown_paths = image_files(options.unknown)

    pipeline.load()  # one-time weight conversion and session start-up are not per-photo work
    started = time.perf_counter()
    enrolled = pipeline.analyze_many([p.path for p in split.enrolled], single_face=True)
    probed = pipeline.analyze_many([p.path for p in split.probes], single_face=False)
    unknown = pipeline.analyze_many(unknown_paths, single_face=False)
    elapsed = time.perf_counter() - started
    photo_count = len(enrolled) + len(probed) + len(unknown)

    vectors, labels = [], []
    rejected_enrolment = 0
    for photo, result in zip(split.enrolled, enrolled, strict=True):
        if isinstance(result, PhotoError) or result.reasons or result.faces[0].embedding is None:
            rejected_enrolment += 1
            continue
        vectors.append(result.faces[0].embedding)
        labels.append(photo.label)
    if not vectors:
        raise DatasetError("no enrolment photo passed the checks; nothing to recognise")
    head = fit_head(np.stack(vectors), labels)

    correct = accepted_correct = no_face = 0
    for photo, result in zip(split.probes, probed, strict=True):
        embedding = _largest_embedding(result)
        if embedding is None:
            no_face += 1
            continue
        match = head.predict(embedding[None])[0]
        best = head.labels[int(np.argmax(head.similarities(embedding[None])[0]))]
        correct += best == photo.label
        accepted_correct += match.index is not None and head.labels[match.index] == photo.label

    unknown_faces = unknown_rejected = 0
    for result in unknown:
        embedding = _largest_embedding(result)
        if embedding is None:
            continue
        unknown_faces += 1
        unknown_rejected += head.predict(embedding[None])[0].index is None

    probes = len(split.probes)
    return {
        "identities": len(head.labels),
        "enrolled_photos": len(vectors),
        "rejected_enrolment_photos": rejected_enrolment,
        "probes": probes,
        "top1": correct / probes if probes else None,
        "threshold": head.threshold,
        "known_accept_rate": accepted_correct / probes if probes else None,
        "unknown_photos": len(unknown_paths),
        "unknown_faces": unknown_faces,
        "unknown_reject_rate": unknown_rejected / unknown_faces if unknown_faces else None,
        "unknown_no_face": len(unknown_paths) - unknown_faces,
        "no_face": no_face,
        "photos": photo_count,
        "seconds": round(elapsed, 3),
        "photos_per_second": photo_count / elapsed if elapsed > 0 else None,
        "embedder": pipeline.embedder.name,
        "head": "cosine-prototypes",
        "calibration": head.calibration.as_dict(),
        "scale": head.scale,
        "seed": options.seed,
        "skipped_people": split.skipped_people,
    }
