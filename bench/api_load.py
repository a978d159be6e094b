"""Load on loopback against real `faceforge serve --workers N` processes plus one `faceforge worker`.

Usage: .venv/bin/python -m bench.api_load [--workers 1 2] [--info-requests 20000] [--clients 4]
       [--identify-requests 200] [--rate 10] [--precision float int8] [--idle-poll-ms auto 0]

For each API process count and embedding graph (``--precision``, forced with
``FACEFORGE_EMBEDDER_PRECISION``; default: what the service chooses, ``auto``) it reports:
- the API processes' start (spawn to the first /healthz answer) and resident memory before the
  first photo, whether PyTorch, coremltools or litert is mapped into them, and memory after identify;
- model info (the legacy URL every phone asks on start) requests/s, with ``--clients`` client
  processes on keep-alive connections;
- identify latency (p50/p99) for a one-face 250 px LFW photo sent at a fixed ``--rate`` per second,
  each request on time whether or not the previous one has returned (an open loop), and the same
  requests back to back (``identify_p50_ms_back_to_back``): on a VM, cores left idle between requests
  100 ms apart wake slowly (measured here: one photo analysed in-process in 23 ms back to back, 37 ms
  with 100 ms pauses);
- identify throughput with 4 concurrent clients.
``--idle-poll-ms`` runs each scenario with ``FACEFORGE_IDLE_POLL_MS`` at each value (``auto``: unset,
the service's own choice; 0: the cores are never kept awake between photos).
The clients run on the same two cores as the server, so every figure is a lower bound.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.reference import machine
from faceforge.core.dataset import image_files

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
LEGACY_INFO = "/gorillas/face-recognition/api/v1.0/model/info"
HEAVY_LIBRARIES = ("libtorch", "coremltools", "litert")
WEIGHTS = Path(tempfile.gettempdir()) / "faceforge-bench" / "weights"


def _port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _mapped_heavy(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in HEAVY_LIBRARIES if name in maps]


def _api_pids(parent: int, workers: int) -> list[int]:
    """The processes answering requests: the parent itself with one worker, else its children."""
    if workers == 1:
        return [parent]
    children = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():  # not the resource tracker
                children.append(int(child))
    return sorted(children)


def _info_client(port: int, count: int) -> float:
    """``count`` model-info requests on one keep-alive connection; returns the seconds taken."""
    connection = http.client.HTTPConnection("127.0.0.1", port)
    started = time.perf_counter()
    for _ in range(count):
        connection.request("GET", LEGACY_INFO)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def _identify(http: httpx.Client, photo: bytes) -> float:
    started = time.perf_counter()
    response = http.post("/api/v1/identify", files={"photo": ("probe.jpg", photo)})
    assert response.status_code == 200, response.text
    assert response.json()["faces"], "the probe photo has one face"
    return time.perf_counter() - started


def _open_loop(send: Any, rate: float, count: int) -> list[float]:
    """Latencies of ``count`` calls of ``send`` made at ``rate`` per second, each at its own instant on
    one clock whether or not the previous one has returned (an open loop)."""
    latencies: list[float] = []
    lock = threading.Lock()
    began = time.perf_counter()

    def paced(index: int) -> None:
        # Each request is sent at its own instant, not after a sleep counted from when a pool thread
        # came free (which spaced the later requests further and further apart).
        time.sleep(max(0.0, began + index / rate - time.perf_counter()))
        seconds = send()
        with lock:
            latencies.append(seconds)

    with ThreadPoolExecutor(32) as threads:
        list(threads.map(paced, range(count)))
    return latencies


def _scenario(workers: int, precision: str, idle_poll: str, args: argparse.Namespace) -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="faceforge-load-")
    port = _port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "FACEFORGE_HOME": home,
        "FACEFORGE_WEIGHTS_CACHE": str(WEIGHTS),
        "FACEFORGE_WORKER__EMBEDDED": "false",
        "FACEFORGE_WORKER__FORMATS": "onnx",
        "FACEFORGE_EMBEDDER_PRECISION": precision,
    }
    env.pop("FACEFORGE_IDLE_POLL_MS", None)
    if idle_poll != "auto":
        env["FACEFORGE_IDLE_POLL_MS"] = idle_poll
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    serve = [sys.executable, "-m", "faceforge.cli.main", "serve", "--port", str(port)]
    serve += ["--workers", str(workers)]
    started = time.perf_counter()
    server = subprocess.Popen(serve, env=env, **quiet)  # type: ignore[call-overload]
    worker = None
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.01)
            start_seconds = time.perf_counter() - started
            time.sleep(1.0)  # every process has started
            pids = _api_pids(server.pid, workers)
            before = {"rss_mb": [_rss_mb(pid) for pid in pids], "heavy": [_mapped_heavy(p) for p in pids]}
            worker_command = [sys.executable, "-m", "faceforge.cli.main", "worker"]
            worker = subprocess.Popen(worker_command, env=env, **quiet)  # type: ignore[call-overload]
            people = sorted(p for p in (FACES / "krasserm_lfw10").iterdir() if p.is_dir())
            for person in people:
                files = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in image_files(person)[:5]]
                assert http.post("/api/v1/people", data={"name": person.name}, files=files).status_code == 201
            deadline = time.monotonic() + 300
            while http.get("/api/v1/training").json()["state"] != "idle" and time.monotonic() < deadline:
                time.sleep(0.2)
            assert http.get(LEGACY_INFO).status_code == 200

        per_client = args.info_requests // args.clients
        with ProcessPoolExecutor(args.clients) as pool:
            _info_client(port, 50)  # warm-up
            began = time.perf_counter()
            list(pool.map(_info_client, [port] * args.clients, [per_client] * args.clients))
            info_rate = per_client * args.clients / (time.perf_counter() - began)

        probe = (FACES / "krasserm_lfw10" / "Tony_Blair").glob("*.jpg")
        photo = sorted(probe)[7].read_bytes()
        # One client, shared by the threads below (a client per request would spend the cores on TLS
        # set-up); its pool opens a connection per concurrent request.
        http = httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=32))
        for _ in range(4 * workers):
            _identify(http, photo)  # the first photo in each process loads the models
        latencies = _open_loop(lambda: _identify(http, photo), args.rate, args.identify_requests)
        back_to_back = [_identify(http, photo) for _ in range(args.identify_requests // 2)]
        with ThreadPoolExecutor(4) as threads:
            began = time.perf_counter()
            list(threads.map(lambda _: _identify(http, photo), range(args.throughput_requests)))
            identify_rate = args.throughput_requests / (time.perf_counter() - began)
        http.close()
        after = [_rss_mb(pid) for pid in pids]
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        server.terminate()
        server.wait(timeout=30)
    return {
        "api_processes": workers,
        "embedder_precision": precision,
        "idle_poll_ms": idle_poll,
        "start_seconds": round(start_seconds, 2),
        "rss_mb_before_first_identify": before["rss_mb"],
        "heavy_libraries_mapped": before["heavy"],
        "rss_mb_after_identify": after,
        "model_info_requests_per_second": round(info_rate, 1),
        "model_info_clients": args.clients,
        "identify_rate_per_second": args.rate,
        "identify_requests": args.identify_requests,
        "identify_p50_ms": round(1000 * statistics.median(latencies), 1),
        "identify_p99_ms": round(1000 * _percentile(latencies, 0.99), 1),
        "identify_slowest_ms": [round(1000 * seconds, 1) for seconds in sorted(latencies)[-5:]],
        "identify_p50_ms_back_to_back": round(1000 * statistics.median(back_to_back), 1),
        "identify_throughput_per_second_4_clients": round(identify_rate, 2),
    }


def _idle_poll(value: str) -> str:
    if value != "auto" and not 0 <= float(value) <= 1000:
        raise argparse.ArgumentTypeError("auto, or milliseconds from 0 to 1000")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--info-requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--identify-requests", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--throughput-requests", type=int, default=60)
    parser.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "float", "int8"])
    parser.add_argument("--idle-poll-ms", nargs="+", default=["auto"], type=_idle_poll)
    args = parser.parse_args()
    results = [
        _scenario(workers, precision, idle_poll, args)
        for workers in args.workers
        for precision in args.precision
        for idle_poll in args.idle_poll_ms
    ]
    print(
        json.dumps(
            {
                "benchmark": "api_load",
                "identify_photo": "250x250 LFW photo, one face",
                "gallery": "krasserm_lfw10, 5 photos per person",
                "runs": results,
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
