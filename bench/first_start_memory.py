"""A server's memory on a first start (an empty weights cache) against a later start (the cache ready).

Usage: .venv/bin/python -m bench.first_start_memory [--weights DIR]
Starts `faceforge serve` (its embedded trainer) in a new home twice: first with a new, empty weights
cache, which its trainer fills (the server embedder, then the on-device backbones), then with that
cache ready. Each time two people of 4 photos are registered and the server's resident memory is read
once their version is current, and again after one identify (the server's own figures: the
conversions run in processes of their own, whose peak is not counted). Prints one JSON object. ``--weights``
keeps the filled cache in DIR (default: a temporary folder, removed at the end). The first start
converts for several minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.reference import machine
from faceforge.core.dataset import image_files

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "krasserm_lfw10"
PEOPLE = ("Tony_Blair", "Colin_Powell")
TIMEOUT_SECONDS = 1800  # a first start converts for minutes


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _memory(pid: int) -> dict[str, float]:
    return {
        "rss_mb": round(_status_kb(pid, "VmRSS") / 1024, 1),
        "peak_mb": round(_status_kb(pid, "VmHWM") / 1024, 1),
    }


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _waiting(server: subprocess.Popen[bytes], deadline: float, log: Path, what: str) -> None:
    """Between two polls: fail with the server's log when it ended or ``deadline`` passed."""
    if server.poll() is not None or time.monotonic() > deadline:
        raise SystemExit(f"no {what}: the server's log is {log}")
    time.sleep(0.5)


def _start(weights: Path) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="faceforge-first-start-"))
    port = _port()
    env = {"FACEFORGE_HOME": str(home), "FACEFORGE_WEIGHTS_CACHE": str(weights)}
    command = [sys.executable, "-m", "faceforge.cli.main", "serve", "--port", str(port)]
    log = Path(tempfile.gettempdir()) / f"faceforge-first-start-{port}.log"
    started = time.perf_counter()
    deadline = time.monotonic() + TIMEOUT_SECONDS
    with log.open("wb") as output:
        server = subprocess.Popen(command, env={**_environment(), **env}, stdout=output, stderr=output)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    _waiting(server, deadline, log, "start")
            result: dict[str, Any] = {"started": _memory(server.pid)}
            for person in PEOPLE:
                photos = [
                    ("photos", (p.name, p.read_bytes(), "image/jpeg"))
                    for p in image_files(FACES / person)[:4]
                ]
                answer = http.post("/api/v1/people", data={"name": person}, files=photos)
                assert answer.status_code == 201, answer.text
            while http.get("/api/v1/models/current").status_code != 200:
                _waiting(server, deadline, log, "model version")
            result["version_ready_seconds"] = round(time.perf_counter() - started, 1)
            result["version_ready"] = _memory(server.pid)
            probe = image_files(FACES / PEOPLE[0])[7]
            answer = http.post("/api/v1/identify", files={"photo": (probe.name, probe.read_bytes())})
            assert answer.status_code == 200, answer.text
            result["after_identify"] = _memory(server.pid)
            return result
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def _environment() -> dict[str, str]:
    """This environment without faceforge's settings (a FACEFORGE_WEIGHTS_CACHE would be used)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("FACEFORGE_")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=None, help="keep the filled weights cache here")
    args = parser.parse_args()
    weights = args.weights or Path(tempfile.mkdtemp(prefix="faceforge-first-start-weights-"))
    if weights.exists() and any(weights.iterdir()):
        parser.error(f"--weights {weights} must be a new or empty folder (its first start converts)")
    try:
        first = _start(weights)
        later = _start(weights)
    finally:
        if args.weights is None:
            shutil.rmtree(weights, ignore_errors=True)
    report = {"benchmark": "first_start_memory", "first_start": first, "later_start": later}
    print(json.dumps({**report, "machine": machine()}))


if __name__ == "__main__":
    main()
