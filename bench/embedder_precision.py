"""The int8 embedding graph against the float one: the same decisions at every gallery size?

Usage: .venv/bin/python -m bench.embedder_precision [--dataset DIR] [--unknown DIR] [--enroll K]
       [--sizes 1,2,5,10,20,50,100,201] [--repeats 5] [--home DIR]

Every photo is analysed once per graph (``bench.memo``); each gallery (eval's ``--people N --seed S``,
as ``bench.gallery_sizes`` draws them) is evaluated three times through ``faceforge eval``'s harness:
``float`` (everything on the float graph), ``int8`` (everything on the int8 graph) and ``mixed``
(enrolment photos on the float graph, probes and strangers on the int8 one: a gallery enrolled before
an upgrade, or by a process that runs the other graph). Per size: known accepted, strangers rejected
and top-1 (means over galleries), each variant's difference from float in points, and the largest
difference in top-1 probes of one gallery. Also the cosine between the two graphs' embeddings of the
largest face of every photo, and the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.gallery_sizes import repeats_for
from bench.memo import MemoPipeline
from bench.reference import machine
from faceforge.building.evaluation.harness import EvalOptions, evaluate
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.faces import PhotoFaces
from faceforge.serving.vision.pipeline import PhotoError

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
SIZES = (1, 2, 5, 10, 20, 50, 100, 201)


class MixedPipeline(MemoPipeline):
    """Enrolment (single-face mode) from one pipeline, everything else from another."""

    def __init__(self, enrol: MemoPipeline, probe: MemoPipeline) -> None:
        super().__init__(probe.settings)
        self.enrol, self.probe = enrol, probe
        self.embedder = probe.embedder

    def load(self) -> None:
        self.enrol.load()
        self.probe.load()

    def analyze_many(
        self, photos: Sequence[Path | bytes], *, single_face: bool, workers: int | None = None
    ) -> list[PhotoFaces | PhotoError]:
        source = self.enrol if single_face else self.probe
        return source.analyze_many(photos, single_face=single_face, workers=workers)


def _largest(result: PhotoFaces | PhotoError) -> np.ndarray[Any, Any] | None:
    if isinstance(result, PhotoError) or not result.faces or result.faces[0].embedding is None:
        return None
    return result.faces[0].embedding


def _cosines(reference: MemoPipeline, other: MemoPipeline, photos: list[Path]) -> dict[str, float]:
    pairs = zip(
        reference.analyze_many(photos, single_face=False),
        other.analyze_many(photos, single_face=False),
        strict=True,
    )
    values = []
    for a, b in pairs:
        first, second = _largest(a), _largest(b)
        if first is not None and second is not None:
            values.append(float(np.dot(first, second)))
    array = np.asarray(values)
    return {
        "faces": len(values),
        "min": round(float(array.min()), 5),
        "p01": round(float(np.quantile(array, 0.01)), 5),
        "mean": round(float(array.mean()), 5),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=FACES / "lfw_dev" / "known")
    parser.add_argument("--unknown", type=Path, default=FACES / "lfw_dev" / "unknown")
    parser.add_argument("--enroll", type=int, default=5)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--home", type=Path, default=None, help="faceforge home (its weights cache is reused)"
    )
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.gettempdir()) / "faceforge-bench"
    graphs = {
        precision: MemoPipeline(Settings(home=home, embedder_precision=precision))
        for precision in ("float", "int8")
    }
    for pipeline in graphs.values():
        pipeline.load()
    variants = {**graphs, "mixed": MixedPipeline(graphs["float"], graphs["int8"])}
    total = sum(1 for person in args.dataset.iterdir() if len(image_files(person)) > args.enroll)
    rows: dict[str, Any] = {}
    for size in (min(int(value), total) for value in args.sizes.split(",") if value):
        figures: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
        top1_gap = 0
        for seed in repeats_for(size, total, args.repeats):
            options = EvalOptions(
                dataset=args.dataset,
                enroll=args.enroll,
                unknown=args.unknown,
                seed=seed,
                people=None if seed is None else size,
            )
            results = {name: evaluate(pipeline, options) for name, pipeline in variants.items()}
            for name, result in results.items():
                for key in ("known_accept_rate", "unknown_reject_rate", "top1"):
                    figures[name].setdefault(key, []).append(result[key])
            probes = results["float"]["probes"]
            for name in ("int8", "mixed"):
                gap = abs(results[name]["top1"] - results["float"]["top1"]) * probes
                top1_gap = max(top1_gap, round(gap))
        row: dict[str, Any] = {"galleries": len(figures["float"]["top1"]), "top1_largest_probe_gap": top1_gap}
        for name, values in figures.items():
            means = {key: statistics.fmean(series) for key, series in values.items()}
            row[name] = {key: round(value, 4) for key, value in means.items()}
            if name != "float":
                row[name]["points_from_float"] = {
                    key: round(100 * (value - statistics.fmean(figures["float"][key])), 2)
                    for key, value in means.items()
                }
        rows[str(size)] = row
        print(json.dumps({str(size): row}), flush=True)
    photos = image_files(args.dataset) + image_files(args.unknown)
    embedders = {name: pipeline.embedder.precision for name, pipeline in graphs.items()}
    print(
        json.dumps(
            {
                "benchmark": "embedder_precision",
                "dataset": str(args.dataset),
                "unknown": str(args.unknown),
                "enroll": args.enroll,
                "graphs_running": embedders,
                "sizes": rows,
                "cosine_float_int8": _cosines(graphs["float"], graphs["int8"], photos),
                **machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
