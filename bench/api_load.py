"""Load on loopback against a real `faceforge serve`: model-info requests/s and identify latency.

Usage: .venv/bin/python -m bench.api_load [--info-requests 2000] [--identify-requests 100] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from faceforge.evaluation.dataset import image_files

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
LEGACY_INFO = "/gorillas/face-recognition/api/v1.0/model/info"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--info-requests", type=int, default=2000)
    parser.add_argument("--identify-requests", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    port = _port()
    home = tempfile.mkdtemp(prefix="faceforge-load-")
    env = {
        **os.environ,
        "FACEFORGE_WEIGHTS_CACHE": str(Path(tempfile.gettempdir()) / "faceforge-bench" / "weights"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "faceforge.cli.main", "serve", "--port", str(port), "--home", home],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if http.get("/api/v1/training").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            people = sorted(p for p in (FACES / "krasserm_lfw10").iterdir() if p.is_dir())
            for person in people:
                files = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in image_files(person)[:5]]
                http.post("/api/v1/people", data={"name": person.name}, files=files)
            while http.get("/api/v1/training").json()["state"] != "idle":
                time.sleep(0.1)

            def info_client(count: int) -> None:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}") as own:
                    for _ in range(count):
                        assert own.get(LEGACY_INFO).status_code == 200

            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(info_client, [args.info_requests // args.clients] * args.clients))
            info_rate = args.info_requests / (time.perf_counter() - started)

            probes = [p for person in people for p in image_files(person)[5:]]
            latencies = []
            for i in range(args.identify_requests):
                photo = probes[i % len(probes)]
                started = time.perf_counter()
                response = http.post("/api/v1/identify", files={"photo": (photo.name, photo.read_bytes())})
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        json.dumps(
            {
                "benchmark": "api_load",
                "model_info_requests_per_second": round(info_rate, 1),
                "model_info_clients": args.clients,
                "identify_requests": args.identify_requests,
                "identify_p50_ms": round(1000 * statistics.median(latencies), 1),
                "identify_p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
                "identify_photo": "250x250 LFW photo, one face",
            }
        )
    )


if __name__ == "__main__":
    main()
