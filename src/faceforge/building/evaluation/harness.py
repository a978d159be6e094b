"""The evaluation run behind ``faceforge eval``: the same pipeline and head the service uses."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceforge.building.evaluation.app_detectors import AppDetector, app_embeddings, box_finder
from faceforge.building.head_fitting import DEFAULT_TARGET_UNKNOWN_REJECT, fit_head
from faceforge.core.dataset import (
    overlapping,
    same_photos,
    split_dataset,
    stranger_groups,
    unknown_photos,
)
from faceforge.core.errors import DatasetError
from faceforge.core.faces import PhotoFaces
from faceforge.serving.vision.face_choice import choose_faces
from faceforge.serving.vision.pipeline import FacePipeline, PhotoError

# 0.98 too: a version that rejects 98 % of strangers (lfw_dev's 201 people do) is compared with the
# most any threshold accepts there with this embedder.
ORACLE_REJECTION_SHARES = (0.95, 0.97, 0.98, 0.99)


def accept_at_rejection(
    known_best: list[tuple[float, bool]], unknown_best: list[float], share: float, *, larger_is_better: bool
) -> float | None:
    """Share of probes accepted as the right person at the score that rejects ``share`` of the unknown
    faces (chosen on the unknowns themselves: an oracle operating point, for comparison)."""
    if not unknown_best or not known_best:
        return None
    sign = 1.0 if larger_is_better else -1.0
    limit = float(np.quantile(sign * np.asarray(unknown_best), share))
    return sum(sign * score > limit and correct for score, correct in known_best) / len(known_best)


@dataclass(frozen=True, slots=True)
class EvalOptions:
    dataset: Path
    enroll: int
    unknown: Path | None = None
    seed: int | None = None
    target_unknown_reject: float = DEFAULT_TARGET_UNKNOWN_REJECT
    app_detector: AppDetector | None = None  # probes and unknowns cropped from this detector's boxes
    people: int | None = None  # enrol only this many people (the first, or at random with seed)
    strangers: Path | None = None  # photos of strangers given to calibration (never probed)


# What a file that is no photo at all is refused as (``serving.vision.decode``, the pipeline's read).
NOT_PHOTOS = frozenset({"empty_file", "not_an_image", "unreadable_file"})


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
    split = split_dataset(options.dataset, enroll=options.enroll, seed=options.seed, people=options.people)
    unknown_paths: list[Path] = []
    if options.unknown is not None:
        unknown_paths = unknown_photos(options.unknown, options.dataset)
    stranger_paths: list[list[Path]] = []
    if options.strangers is not None:
        stranger_paths = stranger_groups(options.strangers)
        if options.unknown is not None and overlapping(options.unknown, options.strangers):
            raise DatasetError(
                "--strangers and --unknown must be different folders: strangers given to "
                "calibration would be counted as rejected unknowns"
            )
        if overlapping(options.dataset, options.strangers):
            raise DatasetError("--strangers must not be inside --dataset (or hold it)")
        given = [path for group in stranger_paths for path in group]
        scored = [p.path for p in (*split.enrolled, *split.probes)] + unknown_paths
        copies = same_photos(given, scored)
        if copies:  # the same photo copied elsewhere: the folders' paths do not show it
            stranger, other = copies[0]
            raise DatasetError(
                f"{len(copies)} photo(s) of --strangers are also enrolled, probes or unknowns "
                f"(e.g. {stranger} is {other}): calibration would have seen what is measured"
            )

    pipeline.load()  # one-time weight conversion and session start-up are not per-photo work
    started = time.perf_counter()
    enrolled = pipeline.analyze_many([p.path for p in split.enrolled], single_face=True)
    probe_paths = [p.path for p in split.probes]
    photo_count = len(enrolled) + len(probe_paths) + len(unknown_paths) + sum(map(len, stranger_paths))
    # A file that is no photo at all (text, empty, a broken link) is listed, not counted a face-less
    # photo: a probe of that kind was a miss, and a tester's two such files gave top-1 0.333. A real
    # photo the service would refuse (corrupt, too small, too large) stays a face-less one.
    unreadable: list[dict[str, str]] = []
    probes = list(split.probes)

    def no_photo(result: PhotoFaces | PhotoError) -> bool:
        return isinstance(result, PhotoError) and result.code in NOT_PHOTOS

    if options.app_detector is None:
        probe_results = pipeline.analyze_many(probe_paths, single_face=False)
        unknown_results = pipeline.analyze_many(unknown_paths, single_face=False)
        for path, result in zip(
            [*probe_paths, *unknown_paths], [*probe_results, *unknown_results], strict=True
        ):
            if isinstance(result, PhotoError) and no_photo(result):
                unreadable.append({"file": str(path), "message": result.message})
        probes = [p for p, r in zip(split.probes, probe_results, strict=True) if not no_photo(r)]
        probe_embeddings = [_largest_embedding(r) for r in probe_results if not no_photo(r)]
        unknown_paths = [p for p, r in zip(unknown_paths, unknown_results, strict=True) if not no_photo(r)]
        unknown_embeddings = [_largest_embedding(r) for r in unknown_results if not no_photo(r)]
    else:
        finder = box_finder(options.app_detector, pipeline)
        probe_embeddings = app_embeddings(pipeline, finder, probe_paths)
        unknown_embeddings = app_embeddings(pipeline, finder, unknown_paths)
    stranger_embeddings: list[np.ndarray[Any, np.dtype[np.float32]]] = []
    for group in stranger_paths:
        found = [_largest_embedding(r) for r in pipeline.analyze_many(group, single_face=False)]
        vectors_of_one = [vector for vector in found if vector is not None]
        if vectors_of_one:
            stranger_embeddings.append(np.stack(vectors_of_one))
    elapsed = time.perf_counter() - started

    vectors, labels = [], []
    rejected_enrolment = resolved_enrolment = 0
    by_person: dict[str, list[PhotoFaces | None]] = {}
    for photo, result in zip(split.enrolled, enrolled, strict=True):
        by_person.setdefault(photo.label, []).append(None if isinstance(result, PhotoError) else result)
    for label, photos in by_person.items():  # the service's rule: a person's photos decide together
        for judged, choice in zip(photos, choose_faces(photos), strict=True):
            embedding = None if judged is None or choice is None else judged.faces[choice.face].embedding
            if embedding is None:
                rejected_enrolment += 1
                continue
            resolved_enrolment += choice is not None and choice.agreement is not None
            vectors.append(embedding)
            labels.append(label)
    if not vectors:
        raise DatasetError("no enrolment photo passed the checks; nothing to recognise")
    head = fit_head(
        np.stack(vectors),
        labels,
        target_unknown_reject=options.target_unknown_reject,
        strangers=stranger_embeddings,
    )

    correct = accepted_correct = no_face = 0
    known_best: list[tuple[float, bool]] = []  # best similarity, and whether it names the right person
    for photo, embedding in zip(probes, probe_embeddings, strict=True):
        if embedding is None:
            no_face += 1
            known_best.append((-np.inf, False))
            continue
        match = head.predict(embedding[None])[0]
        similarities = head.similarities(embedding[None])[0]
        best = head.labels[int(np.argmax(similarities))]
        correct += best == photo.label
        accepted_correct += match.index is not None and head.labels[match.index] == photo.label
        known_best.append((float(similarities.max()), best == photo.label))

    unknown_faces = unknown_rejected = 0
    unknown_best: list[float] = []
    for embedding in unknown_embeddings:
        if embedding is None:
            continue
        unknown_faces += 1
        unknown_rejected += head.predict(embedding[None])[0].index is None
        unknown_best.append(float(head.similarities(embedding[None])[0].max()))

    probe_count = len(probes)
    return {
        "identities": len(head.labels),
        "enrolled_photos": len(vectors),
        "rejected_enrolment_photos": rejected_enrolment,
        "multiple_face_photos_resolved": resolved_enrolment,
        "probes": probe_count,
        "top1": correct / probe_count if probe_count else None,
        "threshold": head.threshold,
        "known_accept_rate": accepted_correct / probe_count if probe_count else None,
        "unknown_photos": len(unknown_paths),
        "unknown_faces": unknown_faces,
        "unknown_reject_rate": unknown_rejected / unknown_faces if unknown_faces else None,
        "unknown_no_face": len(unknown_paths) - unknown_faces,
        "calibration_strangers": len(stranger_embeddings),
        # An oracle, for comparison only: the threshold chosen on the unknown photos themselves.
        "known_accept_at_unknown_reject": {
            f"{share:.2f}": accept_at_rejection(known_best, unknown_best, share, larger_is_better=True)
            for share in ORACLE_REJECTION_SHARES
        },
        "no_face": no_face,
        "unreadable_files": unreadable,
        "photos": photo_count,
        "seconds": round(elapsed, 3),
        "photos_per_second": photo_count / elapsed if elapsed > 0 else None,
        "embedder": pipeline.embedder.name,
        "head": "cosine-prototypes",
        "calibration": head.calibration.as_dict(),
        "scale": head.scale,
        "seed": options.seed,
        "app_detector": None if options.app_detector is None else options.app_detector.value,
        "skipped_people": split.skipped_people,
    }
