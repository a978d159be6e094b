"""The browser client (`GET /client/faceforge.js`) in headless Chromium against a real `faceforge serve`:
first-load size, per-version download at 100 people, `recognize` speed, agreement with the server.

Usage: .venv/bin/python -m bench.browser_client [--people 201] [--probes N] [--port 18350]

lfw_dev: the first 100 people are enrolled from 5 photos each (version 1: what a version costs at 100
people), then the rest (version 2: `update()` downloads what changed); every other photo of theirs is a
known probe, lfw_dev/unknown the strangers (`--probes` takes the first N of each). Each probe goes
through `client.recognize` and `POST /api/v1/identify`; a decision is the largest face's person, or
none. `recognize` is timed on a one-face 250 px photo (krasserm_lfw10), median of 50 after 5 warm-ups,
on one thread (a plain page) and on the machine's cores (a cross-origin isolated page, as /live).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, Route, sync_playwright

from bench.reference import machine
from faceforge.core.config import Settings
from faceforge.core.dataset import image_files

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
LFW_DEV = FACES / "lfw_dev"
ONE_FACE = sorted((FACES / "krasserm_lfw10" / "Tony_Blair").glob("*.jpg"))[7]
ADMIN = "bench-admin"
FIRST = 100
ENROL = 5
RUNTIME = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
ISOLATED_PAGE = "/bench-isolated"
CONNECT = """async ([url, key]) => {
  window.ff = await import(url + "/client/faceforge.js");
  window.client = await ff.connect(url, { apiKey: key });
  return { version: client.version, ...client.lastDownload };
}"""
DECIDE = """async (photos) => {
  const out = [];
  for (const b64 of photos) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes]), { colorSpaceConversion: "none" });
    const faces = await client.recognize(bitmap);
    out.push(faces.length ? faces[0].personId : null);
  }
  return out;
}"""
TIME = """async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes]), { colorSpaceConversion: "none" });
  for (let i = 0; i < 5; i++) await client.recognize(bitmap);
  const times = [];
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    const faces = await client.recognize(bitmap);
    times.push(performance.now() - t);
    if (faces.length !== 1) throw new Error(`${faces.length} faces`);
  }
  return times;
}"""


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _register(http: httpx.Client, folders: list[Path]) -> None:
    for folder in folders:
        files = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in image_files(folder)[:ENROL]]
        answer = http.post("/api/v1/people?train=false", data={"name": folder.name}, files=files)
        assert answer.status_code == 201, answer.text
    http.post("/api/v1/training").raise_for_status()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = http.get("/api/v1/training").json()
        if state["state"] == "idle" and state["built"] == state["requested"]:
            return
        time.sleep(0.3)
    raise TimeoutError("training did not finish")


def _identify(http: httpx.Client, photo: Path) -> int | None:
    faces = http.post("/api/v1/identify", files={"photo": (photo.name, photo.read_bytes())}).json()["faces"]
    return faces[0]["match"]["person_id"] if faces and faces[0]["match"] else None


def _mb(size: int) -> float:
    return round(size / 1e6, 3)


def _isolated(route: Route) -> None:
    headers = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
    page = "<!doctype html><title>bench</title>"
    route.fulfill(status=200, content_type="text/html", headers=headers, body=page)


def _speed(page: Page, url: str, path: str) -> dict[str, Any]:
    page.goto(url + path)
    page.evaluate(CONNECT, [url, ADMIN])
    times = page.evaluate(TIME, _b64(ONE_FACE))
    return {
        "threads": page.evaluate("crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency) : 1"),
        "median_ms": round(statistics.median(times), 1),
        "p90_ms": round(sorted(times)[int(0.9 * len(times))], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=201)
    parser.add_argument("--probes", type=int, default=0, help="first N known probes and N strangers (0: all)")
    parser.add_argument("--port", type=int, default=18350)
    args = parser.parse_args()
    folders = sorted(p for p in (LFW_DEV / "known").iterdir() if p.is_dir())[: args.people]
    known = [(i, p) for i, folder in enumerate(folders) for p in image_files(folder)[ENROL:]]
    strangers = image_files(LFW_DEV / "unknown")
    if args.probes:
        known, strangers = known[: args.probes], strangers[: args.probes]
    home = tempfile.mkdtemp(prefix="faceforge-browser-")
    url = f"http://127.0.0.1:{args.port}"
    env = {
        **os.environ,
        "FACEFORGE_HOME": home,
        "FACEFORGE_WEIGHTS_CACHE": str(Settings().weights_dir),
        "FACEFORGE_WORKER__FORMATS": "onnx",
        "FACEFORGE_WORKER__QUIET_SECONDS": "0",
        "FACEFORGE_ADMIN_KEYS": ADMIN,
    }
    command = [sys.executable, "-m", "faceforge.cli.main", "serve", "--port", str(args.port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        http = httpx.Client(base_url=url, headers={"X-API-Key": ADMIN}, timeout=120)
        deadline = time.monotonic() + 600
        while True:
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        _register(http, folders[:FIRST])
        first = http.get("/api/v1/models/current").json()
        files = first["files"]
        manifest = json.loads(http.get(f"/api/v1/models/{first['version']}/files/manifest.json").content)
        browser_files = manifest["variants"]["browser"]["files"]
        manifest_size = len(http.get(f"/api/v1/models/{first['version']}/files/manifest.json").content)
        per_version = {"head.onnx_mb": _mb(files["head.onnx"]["size"])}
        per_version["manifest.json_mb"] = _mb(manifest_size)
        per_version["total_mb"] = round(per_version["head.onnx_mb"] + per_version["manifest.json_mb"], 3)
        runtime = {}
        # Where faceforge.js loads the runtime from: a folder naming the installed files' digest.
        folder = re.search(r'from "\./(ort/[0-9a-f]+/)', http.get("/client/faceforge.js").text)
        assert folder is not None, "faceforge.js names no runtime folder"
        for name in RUNTIME:  # as a browser receives them: gzipped
            path = f"/client/{folder.group(1)}{name}"
            with http.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as answer:
                sent = sum(len(chunk) for chunk in answer.iter_raw())
            plain = http.get(path, headers={"Accept-Encoding": "identity"})
            runtime[name] = len(plain.content), sent
        modules = sum(len(http.get(f"/client/{name}").content) for name in ("faceforge.js", "contract.js"))
        model_files = {name: _mb(files[name]["size"]) for name in browser_files}
        transferred = sum(sent for _, sent in runtime.values())
        first_load: dict[str, Any] = {
            "model_files_mb": model_files,
            "runtime_mb": {name: _mb(size) for name, (size, _) in runtime.items()},
            "runtime_transferred_gzip_mb": _mb(transferred),
            "client_modules_mb": _mb(modules),
        }
        first_load["total_transferred_mb"] = round(
            sum(model_files.values()) + (transferred + modules + manifest_size) / 1e6, 2
        )
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = chromium.new_page()
            page.set_default_timeout(600_000)
            page.route(url + ISOLATED_PAGE, _isolated)
            page.goto(url + "/healthz")
            page.evaluate(CONNECT, [url, ADMIN])
            _register(http, folders[FIRST:])
            update = page.evaluate("client.update()")
            per_version["update_downloaded"] = update["downloaded"]
            speed = [_speed(page, url, "/healthz"), _speed(page, url, ISOLATED_PAGE)]
            photos = [p for _, p in known] + strangers
            browser: list[int | None] = []
            for start in range(0, len(photos), 50):
                browser += page.evaluate(DECIDE, [_b64(p) for p in photos[start : start + 50]])
            chromium.close()
        ids = {p["name"]: p["id"] for p in http.get("/api/v1/models/current").json()["people"]}
        truth = [ids[folders[i].name] for i, _ in known] + [None] * len(strangers)
        server_side = [_identify(http, p) for p in photos]
    finally:
        server.terminate()
        server.wait(timeout=60)

    def rates(decisions: list[int | None]) -> dict[str, float]:
        k = len(known)
        right = sum(d == t for d, t in zip(decisions[:k], truth[:k], strict=True))
        return {
            "known_accepted": round(right / max(1, k), 4),
            "strangers_rejected": round(sum(d is None for d in decisions[k:]) / max(1, len(strangers)), 4),
        }

    same = sum(b == s for b, s in zip(browser, server_side, strict=True))
    print(
        json.dumps(
            {
                "machine": machine(),
                "people": len(folders),
                "first_load": first_load,
                "per_version_at_100_people": per_version,
                "recognize_one_face_250px": speed,
                "agreement": {
                    "photos": len(photos),
                    "known_probes": len(known),
                    "strangers": len(strangers),
                    "same_decision": round(same / len(photos), 4),
                    "browser": rates(browser),
                    "server": rates(server_side),
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
