"""How fast the camera agent runs on one thread: 640 x 480 frames with a face, per stage, and its
peak RSS, with the exported files an agent keeps (``--cache``, filled from ``--server`` first).

    .venv/bin/python -m bench.watch_speed --server http://127.0.0.1:8000 [--cache DIR] [--model onnx]

Two loops over the same frames (a krasserm_lfw10 photo centred on a grey frame):
- ``as_run``: one face in view for ``FRAMES`` frames, as the agent runs it: the model sees the first
  ``tracking.SAMPLES`` frames of the track, then only the detector runs;
- ``every_frame``: every frame a new track, so each frame pays detector, refiner, crop/align, backbone
  and head (the worst case: a crowd that keeps changing).
Prints one JSON object. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.reference import machine, peak_rss_mb
from faceforge.edge.agent import Agent, make_detector
from faceforge.edge.choices import DetectorName, ModelChoice
from faceforge.edge.models import ModelStore, ServerClient
from faceforge.edge.runtime import EdgeModel
from faceforge.edge.tracking import Tracker

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
FRAMES = 100


def frame_with_face() -> np.ndarray[Any, np.dtype[np.uint8]]:
    frame = Image.new("RGB", (640, 480), (90, 90, 90))
    photo = Image.open(sorted((FACES / "krasserm_lfw10" / "Tony_Blair").glob("*.jpg"))[5]).convert("RGB")
    frame.paste(photo, ((640 - photo.width) // 2, (480 - photo.height) // 2))
    return np.asarray(frame)


def run(
    agent: Agent, frame: np.ndarray[Any, np.dtype[np.uint8]], *, new_track_each_frame: bool
) -> dict[str, Any]:
    started = time.perf_counter()
    for index in range(FRAMES):
        if new_track_each_frame:
            agent.tracker = Tracker()
        agent.step(index, frame)
    seconds = time.perf_counter() - started
    timings = agent.timings
    return {
        "frames_per_second": round(FRAMES / seconds, 2),
        "faces_embedded": timings.faces_embedded,
        "ms_per_frame": {stage: round(ms / FRAMES, 2) for stage, ms in timings.ms.items()},
        "ms_per_embedded_face": {
            stage: round(timings.ms[stage] / max(timings.faces_embedded, 1), 2)
            for stage in ("refine_crop_align", "model")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server")
    parser.add_argument("--cache", type=Path, default=Path("~/.faceforge/edge").expanduser())
    parser.add_argument("--model", type=ModelChoice, default=ModelChoice.TFLITE_INT8)
    parser.add_argument("--detector", type=DetectorName, default=DetectorName.MTCNN)
    args = parser.parse_args()
    store = ModelStore(args.cache, args.model)
    if args.server:
        client = ServerClient(args.server, None)
        store.fetch(client, client.current_version())
        client.close()
    version = store.cached()
    if version is None:
        raise SystemExit(f"no model cached in {args.cache}: give --server URL")
    started = time.perf_counter()
    model = EdgeModel(version, threads=1)
    detector = make_detector(args.detector)
    load_seconds = time.perf_counter() - started
    frame = frame_with_face()
    decisions: list[Any] = []
    results = {}
    for name, fresh in (("as_run", False), ("every_frame", True)):
        agent = Agent(model, detector, "bench", [decisions.append], threads=1)
        agent.step(0, frame)  # warm-up
        agent.tracker, agent.timings = Tracker(), type(agent.timings)()
        results[name] = run(agent, frame, new_track_each_frame=fresh)
    print(
        json.dumps(
            {
                "benchmark": "watch_speed",
                "machine": machine(),
                "model": args.model.value,
                "detector": args.detector.value,
                "frame": [640, 480],
                "threads": 1,
                "frames": FRAMES,
                "load_seconds": round(load_seconds, 2),
                **results,
                "peak_rss_mb": peak_rss_mb(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
