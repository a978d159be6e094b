"""MTCNN's graphs as shipped against their split variants (``building.networks.detector_graphs``).

Usage: .venv/bin/python -m bench.detector_graphs [--runs 300] [--rounds 6]

Prints one JSON object: each network's median milliseconds on one and two threads, shipped and split,
on the batches one 250 px LFW photo gives (P-Net's largest level, R-Net's 71 candidates, O-Net's 9),
and one photo analysed in-process (detection, refiner, embedding) with either detector, the two taking
turns for ``--rounds`` rounds so that the machine's slower moments weigh on both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.reference import machine
from faceforge.building.networks.detector_graphs import write_split_graph
from faceforge.core.config import Settings
from faceforge.serving.vision.mtcnn import (
    MtcnnConfig,
    MtcnnDetector,
    cached_graphs,
    prepare_split_graphs,
    usable_split,
)
from faceforge.serving.vision.pipeline import FacePipeline
from faceforge.serving.vision.runtime import OnnxSession

PROBE = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "krasserm_lfw10" / "Tony_Blair"
BATCHES = {
    "pnet": ("input_1", (1, 150, 150, 3)),
    "rnet": ("input_2", (71, 24, 24, 3)),
    "onet": ("input_3", (9, 48, 48, 3)),
}


def _median_ms(work: Callable[[], object], runs: int) -> float:
    for _ in range(max(3, runs // 10)):
        work()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return round(1000 * statistics.median(seconds), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    home = Path(tempfile.gettempdir()) / "faceforge-bench"
    settings = Settings(home=home)
    folder = cached_graphs(settings.weights_dir)
    prepare_split_graphs(folder, split=write_split_graph)
    networks: dict[str, Any] = {}
    pixels = np.random.default_rng(0)
    for name, (input_name, shape) in BATCHES.items():
        shipped = folder / f"{name}.onnx"
        split = usable_split(shipped)
        if split is None:
            raise SystemExit(f"no split variant of {name}.onnx here: see {folder}")
        feeds = {input_name: ((pixels.integers(0, 256, shape) - 127.5) / 128).astype(np.float32)}
        networks[name] = {"batch": list(shape)}
        for threads in (1, 2):
            for label, graph in (("shipped", shipped), ("split", split)):
                run = partial(OnnxSession(graph, threads=threads).run, feeds)
                networks[name][f"{label}_ms_{threads}_threads"] = _median_ms(run, args.runs)

    pipeline = FacePipeline(settings, threads_per_photo=2)
    pipeline.load()
    split_detector = pipeline.detector
    shipped_detector = MtcnnDetector(MtcnnConfig(), threads=2)  # the package's files, as shipped
    photo = sorted(PROBE.glob("*.jpg"))[7].read_bytes()
    rounds: dict[str, list[float]] = {"shipped": [], "split": []}
    for _ in range(args.rounds):
        for label, detector in (("shipped", shipped_detector), ("split", split_detector)):
            pipeline._detector = detector
            analyze = partial(pipeline.analyze, photo, single_face=False)
            rounds[label].append(_median_ms(analyze, 40))
    print(
        json.dumps(
            {
                "benchmark": "detector_graphs",
                "networks": networks,
                "photo": "krasserm_lfw10/Tony_Blair, 8th photo (250x250, one face), int8 embedder if chosen",
                "embedder_precision": pipeline.embedder.precision,
                "analyze_ms_median_of_rounds": {k: round(statistics.median(v), 2) for k, v in rounds.items()},
                "analyze_ms_rounds": rounds,
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
