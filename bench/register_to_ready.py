"""Time from one more registration to its model version being ready, with 100 x 5 photos enrolled.

Usage: .venv/bin/python -m bench.register_to_ready [--people 100] [--photos-per-person 5]
The 100 "people" are made from the dev photos in ../shared/faces (cycled, so some photos serve twice):
what is timed is the service's work, which depends on counts, not on who is in the photos.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from bench.reference import machine, peak_rss_mb
from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.core.memory import limit_malloc_arenas
from faceforge.serving.api.app import create_app

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


def _photos() -> list[Path]:
    return [
        p
        for folder in ("krasserm_lfw10", "dlib_johns", "deepface_tests", "azure_face_samples")
        for p in image_files(FACES / folder)
    ]


def _files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def _wait_for_version(client: TestClient, version: int) -> dict[str, Any]:
    while True:
        status: dict[str, Any] = client.get("/api/v1/training").json()
        if (
            status["current_version"] is not None
            and status["current_version"] >= version
            and status["state"] == "idle"
        ):
            return status
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--photos-per-person", type=int, default=5)
    args = parser.parse_args()
    limit_malloc_arenas()  # as `faceforge serve` and `faceforge worker` do
    home = Path(tempfile.mkdtemp(prefix="faceforge-bench-"))
    settings = Settings(
        home=home,
        weights_cache=Path(tempfile.gettempdir()) / "faceforge-bench" / "weights",
        worker=WorkerSettings(poll_seconds=0.05),
    )
    photos = _photos()
    k = args.photos_per_person
    # A loopback client address: without API keys faceforge answers loopback clients only.
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        started = time.perf_counter()
        for i in range(args.people):
            chosen = [photos[(i * k + j) % len(photos)] for j in range(k)]
            client.post("/api/v1/people", data={"name": f"person {i}"}, files=_files(chosen))
        enrol_seconds = time.perf_counter() - started
        _wait_for_version(client, 1)
        before = client.get("/api/v1/training").json()["current_version"]
        extra = [photos[(args.people * k + j) % len(photos)] for j in range(k)]
        started = time.perf_counter()
        response = client.post("/api/v1/people", data={"name": "one more"}, files=_files(extra))
        registered = time.perf_counter() - started
        _wait_for_version(client, before + 1)
        ready = time.perf_counter() - started
        model = client.get("/api/v1/models/current").json()
    print(
        json.dumps(
            {
                "benchmark": "register_to_ready",
                "people_enrolled": args.people,
                "photos_per_person": k,
                "people_in_new_version": len(model["people"]),
                "registration_request_seconds": round(registered, 3),
                "registration_to_ready_seconds": round(ready, 3),
                "training_seconds": model["metrics"].get("train_seconds"),
                "export_seconds_by_format": model["metrics"].get("export_seconds"),
                "accepted_photos_of_new_person": sum(
                    p["verdict"] == "accepted" for p in response.json()["photos"]
                ),
                "initial_enrolment_seconds": round(enrol_seconds, 1),
                "peak_rss_mb": peak_rss_mb(),
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
