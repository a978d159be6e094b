"""Accuracy: faceforge vs face_recognition on the same enrol/probe split of a dataset folder.

Usage: .venv/bin/python bench/accuracy_vs_face_recognition.py [--dataset DIR] [--enroll K]
       [--unknown DIR] [--seed S] [--home DIR]
Prints one JSON object. faceforge is scored with its own threshold, calibrated from enrolled photos
only. face_recognition is scored at its documented tolerance (0.6) and, like faceforge, at the
operating points that reject 95, 97, 98 and 99 % of the unknown photos (oracle points, for comparison
only). Default split: lfw_dev (201 known people, 500 strangers).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.reference import FloatArray, reference_many
from faceforge.building.evaluation.harness import (
    ORACLE_REJECTION_SHARES,
    EvalOptions,
    accept_at_rejection,
    evaluate,
)
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files, split_dataset
from faceforge.serving.vision.pipeline import FacePipeline

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
DEFAULT_TOLERANCE = 0.6


def reference_scores(dataset: Path, enroll: int, unknown: Path | None, seed: int | None) -> dict[str, Any]:
    split = split_dataset(dataset, enroll=enroll, seed=seed)
    unknown_paths = image_files(unknown) if unknown else []
    enrolled = reference_many([p.path for p in split.enrolled], processes=2)
    probes = reference_many([p.path for p in split.probes], processes=2)
    unknowns = reference_many(unknown_paths, processes=2)
    gallery: list[FloatArray] = []
    names: list[str] = []
    for photo, faces in zip(split.enrolled, enrolled, strict=True):
        if len(faces) >= 1:
            gallery.append(faces[0][1])
            names.append(photo.label)
    matrix = np.stack(gallery)

    def nearest(encoding: FloatArray) -> tuple[float, str]:
        distances = np.linalg.norm(matrix - encoding, axis=1)
        best = int(np.argmin(distances))
        return float(distances[best]), names[best]

    known_best: list[tuple[float, bool]] = []
    for photo, faces in zip(split.probes, probes, strict=True):
        if not faces:
            known_best.append((np.inf, False))
            continue
        distance, name = nearest(faces[0][1])
        known_best.append((distance, name == photo.label))
    unknown_best = [nearest(faces[0][1])[0] for faces in unknowns if faces]
    probe_count = len(split.probes)
    return {
        "top1": sum(correct for _, correct in known_best) / probe_count,
        "known_accept_rate_at_0.6": sum(d <= DEFAULT_TOLERANCE and c for d, c in known_best) / probe_count,
        "unknown_reject_rate_at_0.6": (
            sum(d > DEFAULT_TOLERANCE for d in unknown_best) / len(unknown_best) if unknown_best else None
        ),
        "known_accept_at_unknown_reject": {
            f"{share:.2f}": accept_at_rejection(known_best, unknown_best, share, larger_is_better=False)
            for share in ORACLE_REJECTION_SHARES
        },
        "no_face": sum(not faces for faces in probes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=FACES / "lfw_dev" / "known")
    parser.add_argument("--enroll", type=int, default=5)
    parser.add_argument("--unknown", type=Path, default=FACES / "lfw_dev" / "unknown")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    home = args.home or Path(tempfile.gettempdir()) / "faceforge-bench"
    settings = Settings(home=home)
    ours = evaluate(
        FacePipeline(settings),
        EvalOptions(args.dataset, args.enroll, args.unknown, args.seed, settings.target_unknown_reject),
    )
    theirs = reference_scores(args.dataset, args.enroll, args.unknown, args.seed)
    keys = (
        "identities",
        "probes",
        "top1",
        "threshold",
        "known_accept_rate",
        "unknown_reject_rate",
        "known_accept_at_unknown_reject",
        "no_face",
    )
    print(
        json.dumps(
            {
                "benchmark": "accuracy_vs_face_recognition",
                "dataset": str(args.dataset),
                "unknown": str(args.unknown) if args.unknown else None,
                "enroll": args.enroll,
                "seed": args.seed,
                "faceforge": {
                    **{key: ours[key] for key in keys},
                    "estimated_known_accept": ours["calibration"]["estimated_known_accept"],
                    "estimated_unknown_reject": ours["calibration"]["estimated_unknown_reject"],
                },
                "face_recognition": theirs,
            }
        )
    )


if __name__ == "__main__":
    main()
