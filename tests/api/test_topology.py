"""The production shape, with real processes running compose.yaml's commands: API processes that
never load PyTorch or the conversion tools; `serve --workers 2` and a separate `faceforge worker` on
PostgreSQL sharing one home; a worker killed mid-training and another taking over; an API process
killed while the other keeps answering; every process answering for each new version without a
restart."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from faceforge.core.config import Settings
from faceforge.core.dataset import image_files
from faceforge.core.parent_watch import CLEAN_UP_SECONDS
from faceforge.serving.awake_cores import SHARED_PAGE_ENV
from faceforge.serving.vision.pipeline import FacePipeline
from tests.api.fixtures import (
    faceforge_command,
    faceforge_environment,
    faceforge_server,
    heavy_libraries_loaded,
    photo_fields,
    wait_for,
)
from tests.conftest import LFW10, process_state
from tests.test_deployment_files import deployment_command

LEGACY_INFO = "/gorillas/face-recognition/api/v1.0/model/info"
PEOPLE = ("Colin_Powell", "Tony_Blair", "Hugo_Chavez")


@contextmanager
def faceforge_worker(home: Path, settings: Settings, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        faceforge_command(*deployment_command("worker")[1:]),
        env=faceforge_environment(home, settings, **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def _register(http: httpx.Client, folder: str) -> None:
    photos = photo_fields(image_files(LFW10 / folder)[:4])
    response = http.post("/api/v1/people", data={"name": folder}, files=photos)
    assert response.status_code == 201, response.text


def _by_every_process(
    url: str, pids: list[int], ask: Callable[[httpx.Client], httpx.Response], check: Callable[[Any], bool]
) -> None:
    """Ask on fresh connections until every API process has answered, and every answer passes."""
    served_by: set[int] = set()
    for _ in range(200):
        with httpx.Client(base_url=url, timeout=60) as http:  # a new connection: any process may take it
            response = ask(http)
        assert response.status_code == 200, response.text
        assert check(response), response.text[:300]
        served_by.add(int(response.headers["x-served-by"].rsplit(":", 1)[1]))
        if served_by >= set(pids):
            return
    raise AssertionError(f"only processes {sorted(served_by)} of {pids} answered")


@pytest.fixture
def home(tmp_path: Path, pipeline: FacePipeline) -> Path:
    """A fresh home; ``pipeline`` has converted the weights the API processes embed with."""
    return tmp_path / "home"


def test_an_api_process_never_loads_pytorch_or_the_converters(home: Path, settings: Settings) -> None:
    """Embedded worker off: registering (detect, refine, embed), readiness and metrics work, and
    nothing of PyTorch, coremltools or litert is in the process's memory."""
    env = {"FACEFORGE_WORKER__EMBEDDED": "false"}
    # A minute, as every client here: the process's first photos load its networks, and on a CPU without
    # VNNI measure its int8 kernels (httpx's 5 s default timed out in a CI run on such a CPU).
    with (
        faceforge_server(home, settings, env=env) as served,
        httpx.Client(base_url=served.url, timeout=60) as http,
    ):
        _register(http, "Tony_Blair")
        assert http.get("/readyz").json()["model_version"] is None
        identify = http.post("/api/v1/identify", files={"photo": ("p.jpg", b"not a photo")})
        assert identify.status_code == 409 and identify.json()["error"]["code"] == "model_not_ready"
        metrics = http.get("/metrics").text
        assert (
            'faceforge_http_requests_total{method="POST",route="/api/v1/people",status="201"} 1.0' in metrics
        )
        assert "faceforge_training_queue_depth 1.0" in metrics  # asked for, and no worker runs
        assert heavy_libraries_loaded(served.process.pid) == []


def _environment_path(pid: int, name: str) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    (entry,) = [e for e in environ if e.startswith(f"{name}=".encode())]
    return Path(entry.split(b"=", 1)[1].decode())


def test_several_api_processes_share_their_photos_page_and_leave_nothing_behind(
    home: Path, settings: Settings
) -> None:
    """``serve --workers 2`` makes a folder for the processes' counters and a page of memory that says
    which of them has a photo in progress (``AwakeCores``): both go when the processes do."""
    command = ("faceforge", "serve", "--workers", "2")
    with faceforge_server(home, settings, command=command) as served:
        pids = wait_for(lambda: len(served.api_pids()) == 2 and served.api_pids(), what="two API processes")
        folder = _environment_path(pids[0], "PROMETHEUS_MULTIPROC_DIR")
        assert httpx.get(f"{served.url}/metrics").status_code == 200 and folder.is_dir()
        pages = {_environment_path(pid, SHARED_PAGE_ENV) for pid in pids}
        assert len(pages) == 1, pages
        (page,) = pages
        assert page.parent == Path(f"/proc/{served.process.pid}/fd")  # the supervisor holds it open
        assert page.stat().st_size >= 4096
    assert not folder.exists()
    assert not page.exists()


def test_api_processes_stop_when_their_supervisor_is_killed(home: Path, settings: Settings) -> None:
    """``serve --workers 2`` killed outright (SIGKILL, the OOM killer) took nobody with it: its API
    processes went on serving the port, and a new ``serve`` could not bind it. They now shut down."""
    command = ("faceforge", "serve", "--workers", "2")
    with faceforge_server(home, settings, command=command) as served:
        pids = wait_for(lambda: len(served.api_pids()) == 2 and served.api_pids(), what="two API processes")
        page = _environment_path(pids[0], SHARED_PAGE_ENV)
        assert page.exists()
        os.kill(served.process.pid, signal.SIGKILL)
        served.process.wait(timeout=30)
        # Well within parent_watch's 30 s hard exit, which would also end them: only uvicorn's
        # graceful shutdown, run by the watch, ends them this soon.
        wait_for(
            lambda: all(process_state(pid) in ("", "Z") for pid in pids),
            timeout=CLEAN_UP_SECONDS / 2,
            what="the API processes to stop",
        )
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{served.url}/healthz", timeout=5)
        assert not page.exists(), "their page of photos in progress went with them (no file is left)"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_api_processes_and_a_worker_on_postgresql(
    home: Path, settings: Settings, database_url: str
) -> None:
    env = {"FACEFORGE_DATABASE_URL": database_url}
    with (
        faceforge_server(home, settings, command=tuple(deployment_command("api")), env=env) as served,
        httpx.Client(base_url=served.url, timeout=60) as http,
    ):
        pids = wait_for(lambda: len(served.api_pids()) == 2 and served.api_pids(), what="two API processes")
        for pid in pids:
            assert heavy_libraries_loaded(pid) == [], f"API process {pid}"

        # A worker that dies mid-training (held just before publishing, then SIGKILL) ...
        with faceforge_worker(
            home, settings, **env, FACEFORGE_WORKER__PAUSE_BEFORE_PUBLISH_SECONDS="60"
        ) as doomed:
            for folder in PEOPLE[:2]:
                _register(http, folder)
            wait_for(
                lambda: http.get("/api/v1/training").json()["stage"] == "paused", what="training to pause"
            )
            os.kill(doomed.pid, signal.SIGKILL)
            doomed.wait(timeout=30)
        assert http.get("/api/v1/models/current").status_code == 409  # nothing was published

        # ... and another that takes over: the lost version fails, the pending changes are trained.
        with faceforge_worker(home, settings, **env) as worker:
            wait_for(lambda: http.get("/api/v1/models/current").status_code == 200, what="a new version")
            versions = {m["version"]: m for m in http.get("/api/v1/models").json()["items"]}
            assert versions[1]["status"] == "failed" and "taken over" in versions[1]["status_message"]
            current = http.get("/api/v1/models/current").json()
            assert current["version"] == 2 and current["status"] == "ready"

            probe = image_files(LFW10 / "Tony_Blair")[6].read_bytes()
            _by_every_process(
                served.url,
                pids,
                lambda c: c.post("/api/v1/identify", files={"photo": ("p.jpg", probe)}),
                lambda r: r.json()["faces"][0]["match"]["name"] == "Tony_Blair",
            )
            head = http.get("/api/v1/models/2").json()["files"]["head.safetensors"]
            _by_every_process(
                served.url,
                pids,
                lambda c: c.get("/api/v1/models/2/files/head.safetensors"),
                lambda r: r.headers["etag"] == f'"{head["sha256"]}"',
            )

            # A new version: every process answers for it at once, without a restart.
            _register(http, PEOPLE[2])
            wait_for(lambda: http.get("/api/v1/training").json()["built"] == 3, what="version 3")
            _by_every_process(
                served.url,
                pids,
                lambda c: c.get(LEGACY_INFO),
                lambda r: r.json()["model"]["version"] == 3 and len(r.json()["model"]["users"]) == 3,
            )
            metrics = http.get("/metrics").text
            assert "faceforge_current_model_version 3.0" in metrics
            assert 'faceforge_trainings_total{outcome="failed"} 1.0' in metrics
            # Versions of ONNX alone, built from converted backbones, need no converter: PyTorch cost
            # every worker and server start 2.2 s of a core, and the TFLite runtime its memory.
            assert heavy_libraries_loaded(worker.pid) == []

        # One API process dies: the other keeps answering.
        os.kill(pids[0], signal.SIGKILL)
        for _ in range(20):
            with httpx.Client(base_url=served.url, timeout=30) as fresh:
                assert fresh.get(LEGACY_INFO).json()["model"]["version"] == 3
