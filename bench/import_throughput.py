"""Bulk import throughput against `faceforge eval`'s, on the same photos, in the same run.

Usage: .venv/bin/python -m bench.import_throughput [--dataset DIR] [--home DIR]
Prints one JSON object: eval's photos/s (decode + detect + embed of every photo of DIR), then
`faceforge import`'s photos/s into a fresh home (the same work plus hashing, storing files and rows),
the training of the one version that follows, and a second import (which must find everything).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.reference import machine, peak_rss_mb
from faceforge.building.evaluation.harness import EvalOptions, evaluate
from faceforge.cli.bulk import run_import
from faceforge.core.config import Settings, WorkerSettings
from faceforge.serving.vision.pipeline import FacePipeline

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=FACES / "lfw_dev" / "known")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "faceforge-bench")
    args = parser.parse_args()
    weights = Settings(home=args.home).weights_dir
    figures = evaluate(FacePipeline(Settings(home=args.home)), EvalOptions(dataset=args.dataset, enroll=5))
    home = Path(tempfile.mkdtemp(prefix="faceforge-import-"))
    try:
        settings = Settings(
            home=home, weights_cache=weights, worker=WorkerSettings(formats="onnx,coreml,tflite")
        )
        started = time.perf_counter()
        first = run_import(args.dataset, settings=settings, server=None, api_key=None, wait=True)
        total = time.perf_counter() - started
        second = run_import(args.dataset, settings=settings, server=None, api_key=None, wait=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "import_throughput",
                "dataset": str(args.dataset),
                "photos": figures["photos"],
                "eval_photos_per_second": round(figures["photos_per_second"], 2),
                "import_photos_per_second": first.photos_per_second,
                "import_seconds": first.seconds,
                "import_to_ready_version_seconds": round(total, 2),
                "photos_accepted": first.photos_accepted,
                "photos_refused": len(first.refused),
                "version": first.version,
                "second_run_photos_accepted": second.photos_accepted,
                "second_run_already_imported": second.photos_already_imported,
                "peak_rss_mb": peak_rss_mb(),
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
