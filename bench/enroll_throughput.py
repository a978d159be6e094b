"""Enrolment throughput: faceforge vs face_recognition on the same photos, in the same run.

Usage: .venv/bin/python -m bench.enroll_throughput [--photos DIR] [--workers N] [--home DIR]
       [--precision float int8]
Prints one JSON object: photos/s of each (decode + detect + embed, wall clock) and their ratios;
faceforge once per embedding graph (``--precision``, each forced: ``Settings.embedder_precision``).
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
    parser.add_argument("--precision", nargs="+", default=["float", "int8"], choices=["float", "int8"])
    args = parser.parse_args()
    paths = image_files(args.photos)
    home = args.home or Path(tempfile.gettempdir()) / "faceforge-bench"

    rates: dict[str, float] = {}
    accepted: dict[str, int] = {}
    for precision in args.precision:
        pipeline = FacePipeline(Settings(home=home, workers=args.workers, embedder_precision=precision))
        pipeline.load()  # weights conversion and session start-up are not per-photo work
        pipeline.analyze_many(paths[:4], single_face=True)  # warm-up
        started = time.perf_counter()
        ours = pipeline.analyze_many(paths, single_face=True)
        rates[precision] = len(paths) / (time.perf_counter() - started)
        accepted[precision] = sum(not isinstance(r, PhotoError) and not r.reasons for r in ours)
        del pipeline, ours

    reference_many(paths[:2], processes=1)  # warm-up: loads dlib's models
    started = time.perf_counter()
    theirs_single = reference_many(paths, processes=1)
    single_seconds = time.perf_counter() - started
    started = time.perf_counter()
    reference_many(paths, processes=args.workers)
    parallel_seconds = time.perf_counter() - started

    single_rate = len(paths) / single_seconds
    parallel_rate = len(paths) / parallel_seconds
    print(
        json.dumps(
            {
                "benchmark": "enroll_throughput",
                "photos": len(paths),
                "folder": str(args.photos),
                "workers": args.workers,
                **{f"faceforge_{p}_photos_per_second": round(rate, 2) for p, rate in rates.items()},
                **{f"faceforge_{p}_accepted_photos": count for p, count in accepted.items()},
                "face_recognition_photos_per_second_1_process": round(single_rate, 2),
                f"face_recognition_photos_per_second_{args.workers}_processes": round(parallel_rate, 2),
                "face_recognition_photos_with_face": sum(bool(faces) for faces in theirs_single),
                **{f"ratio_{p}_vs_1_process": round(rate / single_rate, 2) for p, rate in rates.items()},
                **{
                    f"ratio_{p}_vs_{args.workers}_processes": round(rate / parallel_rate, 2)
                    for p, rate in rates.items()
                },
                "peak_rss_mb": peak_rss_mb(),
                **machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
