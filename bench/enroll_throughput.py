"""Enrolment throughput: faceforge vs face_recognition on the same photos, in the same run.

Usage: .venv/bin/python bench/enroll_throughput.py [--photos DIR] [--workers N] [--home DIR]
Prints one JSON object: photos/s of each (decode + detect + embed, wall clock) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.reference import machine, peak_rss_mb, reference_many
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.serving.vision.pipeline import FacePipeline, PhotoError

DEFAULT_PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--home", type=Path, default=None, help="faceforge home (weights cache)")
    args = parser.parse_args()
    paths = image_files(args.photos)
    home = args.home or Path(tempfile.gettempdir()) / "faceforge-bench"

    pipeline = FacePipeline(Settings(home=home, workers=args.workers))
    pipeline.load()  # weights conversion and session start-up are not per-photo work
    pipeline.analyze_many(paths[:4], single_face=True)  # warm-up
    started = time.perf_counter()
    ours = pipeline.analyze_many(paths, single_face=True)
    ours_seconds = time.perf_counter() - started

    reference_many(paths[:2], processes=1)  # warm-up: loads dlib's models
    started = time.perf_counter()
    theirs_single = reference_many(paths, processes=1)
    single_seconds = time.perf_counter() - started
    started = time.perf_counter()
    reference_many(paths, processes=args.workers)
    parallel_seconds = time.perf_counter() - started

    ours_rate = len(paths) / ours_seconds
    single_rate = len(paths) / single_seconds
    parallel_rate = len(paths) / parallel_seconds
    accepted = sum(not isinstance(r, PhotoError) and not r.reasons for r in ours)
    print(
        json.dumps(
            {
                "benchmark": "enroll_throughput",
                "photos": len(paths),
                "folder": str(args.photos),
                "workers": args.workers,
                "faceforge_photos_per_second": round(ours_rate, 2),
                "faceforge_accepted_photos": accepted,
                "face_recognition_photos_per_second_1_process": round(single_rate, 2),
                f"face_recognition_photos_per_second_{args.workers}_processes": round(parallel_rate, 2),
                "face_recognition_photos_with_face": sum(bool(faces) for faces in theirs_single),
                "ratio_vs_1_process": round(ours_rate / single_rate, 2),
                f"ratio_vs_{args.workers}_processes": round(ours_rate / parallel_rate, 2),
                "peak_rss_mb": peak_rss_mb(),
                **machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
