"""The cost curve from 100 to 10,000 people: what one more registration costs, what each format costs
to export and weighs, what a phone downloads per version, memory, and identify against the gallery.

Usage: .venv/bin/python -m bench.scale_curve [--people 100 1000 10000] [--photos-per-person 5]

Each gallery size runs in a process of its own (so peak RSS is that size's): a service with every
format and its embedded worker, in a fresh home. 100 people are real (lfw_dev/known: the first
people with enough photos, registered through the API). Beyond that the gallery is synthetic,
written straight into the database: per person a random unit centre in the 640-d embedding space
and photos around it at cosine ~0.8 to each other (about what real photos of one person reach), so
the work measured (fitting, calibration, export, identify) depends on counts as it does for real
people. Then one real person is registered through the API and timed until their version is ready,
and a real photo is identified against the whole gallery.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from bench.reference import machine, peak_rss_mb
from faceforge.core.config import Settings, WorkerSettings
from faceforge.core.dataset import image_files
from faceforge.core.embedding_space import EMBEDDER_NAME, EMBEDDING_SIZE
from faceforge.core.memory import limit_malloc_arenas
from faceforge.serving.api.app import create_app
from faceforge.storage import people_store

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
KNOWN = FACES / "lfw_dev" / "known"
WEIGHTS = Path(tempfile.gettempdir()) / "faceforge-bench" / "weights"
NEW_PERSON = FACES / "krasserm_lfw10" / "Tony_Blair"
# Photos around a centre c as normalise(c + noise), noise of norm sigma: cos(photo, photo') ~ 1/(1+sigma^2).
SIGMA = 0.5


def _files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def _wait_for_version(client: TestClient, version: int, timeout: float = 1800.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, Any] = client.get("/api/v1/training").json()
        if (status["current_version"] or 0) >= version and status["state"] == "idle":
            return status
        failure = status["last_failure"]
        if failure is not None and failure["version"] >= version:
            raise RuntimeError(f"version {failure['version']} failed: {failure}")
        time.sleep(0.05)
    raise TimeoutError(f"version {version} not ready after {timeout} s")


def _real_gallery(client: TestClient, people: int, per_person: int) -> None:
    folders = [f for f in sorted(KNOWN.iterdir()) if f.is_dir() and len(image_files(f)) > per_person]
    assert len(folders) >= people, f"lfw_dev/known has {len(folders)} people with > {per_person} photos"
    for folder in folders[:people]:
        files = _files(image_files(folder)[:per_person])
        response = client.post("/api/v1/people?train=false", data={"name": folder.name}, files=files)
        assert response.status_code == 201, response.text


def _synthetic_gallery(settings: Settings, client: TestClient, people: int, per_person: int) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    random = np.random.default_rng(0)
    with services.sessions.begin() as session:
        for i in range(people):
            person_id = people_store.create_person(
                session, name=f"synthetic {i + 1}", position=None, external_id=None
            )
            centre = random.standard_normal(EMBEDDING_SIZE).astype(np.float32)
            centre /= np.linalg.norm(centre)
            noise = random.standard_normal((per_person, EMBEDDING_SIZE)).astype(np.float32)
            noise *= SIGMA / np.linalg.norm(noise, axis=1, keepdims=True)
            photos = centre + noise
            photos /= np.linalg.norm(photos, axis=1, keepdims=True)
            for j, embedding in enumerate(photos):
                fields = {
                    "sha256": f"{i:032x}{j:032x}",
                    "content_type": "image/jpeg",
                    "size_bytes": 0,
                    "width": 250,
                    "height": 250,
                    "box": {"x": 70.0, "y": 70.0, "width": 110.0, "height": 110.0},
                    "landmarks": [],
                    "score": 1.0,
                    "embedder": EMBEDDER_NAME,
                    "embedding": embedding.astype("<f4").tobytes(),
                }
                people_store.add_photo(
                    session, person_id=person_id, stored_name=f"synthetic-{i}-{j}", fields=fields
                )
        people_store.request_training(session)


def one_size(people: int, per_person: int) -> dict[str, Any]:
    limit_malloc_arenas()  # as `faceforge serve` and `faceforge worker` do
    home = Path(tempfile.mkdtemp(prefix="faceforge-scale-"))
    settings = Settings(
        home=home,
        weights_cache=WEIGHTS,
        worker=WorkerSettings(poll_seconds=0.05, formats="onnx,coreml,tflite", keep_versions=2),
    )
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        started = time.perf_counter()
        if people <= 100:
            _real_gallery(client, people, per_person)
            assert client.post("/api/v1/training").status_code == 202
        else:
            _synthetic_gallery(settings, client, people, per_person)
        gallery_seconds = time.perf_counter() - started
        first = _wait_for_version(client, 1)
        first_model = client.get(f"/api/v1/models/{first['current_version']}").json()

        started = time.perf_counter()
        response = client.post(
            "/api/v1/people", data={"name": "Tony Blair"}, files=_files(image_files(NEW_PERSON)[:5])
        )
        assert response.status_code == 201, response.text
        _wait_for_version(client, first["current_version"] + 1)
        register_to_ready = time.perf_counter() - started
        model = client.get("/api/v1/models/current").json()
        files = model["files"]

        probe = image_files(NEW_PERSON)[7].read_bytes()
        latencies = []
        for _ in range(12):
            began = time.perf_counter()
            found = client.post("/api/v1/identify", files={"photo": ("probe.jpg", probe)}).json()
            latencies.append(time.perf_counter() - began)
        match = found["faces"][0]["match"]
        info = client.get("/gorillas/face-recognition/api/v1.0/model/info")
    metrics = model["metrics"]
    head_files = [
        "head.safetensors",
        "head.onnx",
        "head.tflite",
        "head.mlmodel",
        "labels.txt",
        "manifest.json",
    ]
    return {
        "people": len(model["people"]),
        "photos_per_person": per_person,
        "gallery": "real (lfw_dev)" if people <= 100 else "synthetic unit embeddings",
        "gallery_setup_seconds": round(gallery_seconds, 1),
        "first_version_train_seconds": first_model["metrics"].get("train_seconds"),
        "registration_to_ready_seconds": round(register_to_ready, 2),
        "train_seconds": metrics.get("train_seconds"),
        "export_seconds_by_format": metrics.get("export_seconds"),
        "file_sizes_mb": {name: round(entry["size"] / 2**20, 3) for name, entry in sorted(files.items())},
        "per_version_download_mb": {
            "head_files": round(sum(files[n]["size"] for n in head_files if n in files) / 2**20, 3),
        },
        "identify_p50_ms": round(1000 * statistics.median(latencies[2:]), 1),
        "identify_recognised": match is not None and match["name"] == "Tony Blair",
        "model_info_bytes": len(info.content),
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--photos-per-person", type=int, default=5)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: one size
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_size(args.one, args.photos_per_person)))
        return
    results = []
    for people in args.people:
        command = [sys.executable, "-m", "bench.scale_curve", "--one", str(people)]
        command += ["--photos-per-person", str(args.photos_per_person)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            results.append({"people": people, "failed": done.stderr.strip().splitlines()[-3:]})
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps({"benchmark": "scale_curve", "sizes": results, "machine": machine()}))


if __name__ == "__main__":
    main()
