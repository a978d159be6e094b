"""One real ``faceforge serve`` for the whole package (its modules share it) with a TFLite + ONNX
version of three krasserm_lfw10 people, videos made from real photos, and MQTT subscribers on the
machine's real Mosquitto."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from faceforge.core.config import Settings
from faceforge.edge.choices import ModelChoice
from faceforge.edge.models import ModelStore, ServerClient
from tests.api.fixtures import faceforge_command, faceforge_server, photo_fields, wait_for
from tests.conftest import FACES, LFW10

BROKER = ("127.0.0.1", 1883)
PEOPLE = ("Colin_Powell", "Tony_Blair", "Hugo_Chavez")
NEWCOMER = "Vladimir_Putin"  # enrolled while an agent watches (the head-only update)
STRANGERS = sorted((FACES / "lfw_dev" / "unknown").glob("*.jpg"))[:3]
FRAME = (640, 480)
HOLD = 4  # frames each photo is shown
GAP = 7  # blank frames between photos: more than tracking.MAX_MISSED, so each photo is a track


def enrolment(person: str) -> list[Path]:
    return sorted((LFW10 / person).glob("*.jpg"))[:3]


def probes(person: str) -> list[Path]:
    return sorted((LFW10 / person).glob("*.jpg"))[3:5]


def write_video(
    path: Path, photos: list[Path], *, codec: str, rate: int = 10, options: dict[str, str] | None = None
) -> None:
    """Each photo centred on a grey 640 x 480 frame for ``HOLD`` frames, ``GAP`` grey frames after.
    ``options``: the muxer's (``{"movflags": "faststart"}``: an MP4's index first, as served on the web)."""
    import av

    blank = Image.new("RGB", FRAME, (90, 90, 90))
    with av.open(str(path), "w", options=options or {}) as container:
        stream: Any = container.add_stream(codec, rate=rate)
        stream.width, stream.height = FRAME
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for photo in photos:
            frame = blank.copy()
            picture = Image.open(photo).convert("RGB")
            frame.paste(picture, ((FRAME[0] - picture.width) // 2, (FRAME[1] - picture.height) // 2))
            for image in [frame] * HOLD + [blank] * GAP:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(blank), format="rgb24")):
            container.mux(packet)  # one more grey frame: a video without photos is still a video
        for packet in stream.encode():
            container.mux(packet)


@dataclass
class Server:
    url: str
    http: httpx.Client

    def enrol(self, person: str) -> int:
        response = self.http.post(
            "/api/v1/people", data={"name": person}, files=photo_fields(enrolment(person)), timeout=120
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def wait_for_version(self, version: int) -> None:
        def ready() -> bool:
            response = self.http.get("/api/v1/models/current")
            return response.status_code == 200 and response.json()["version"] >= version

        wait_for(ready, timeout=300, what=f"version {version}")


@pytest.fixture(scope="package")
def server(device_backbones: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose version 1 (TFLite and ONNX files) knows ``PEOPLE``."""
    home = tmp_path_factory.mktemp("watch-server")
    env = {"FACEFORGE_WORKER__FORMATS": "onnx,tflite"}
    with (
        faceforge_server(home, device_backbones, env=env) as served,
        httpx.Client(base_url=served.url, timeout=60) as http,  # the first photos load the networks
    ):
        server = Server(served.url, http)
        for person in PEOPLE:
            response = http.post(
                "/api/v1/people?train=false", data={"name": person}, files=photo_fields(enrolment(person))
            )
            assert response.status_code == 201, response.text
        assert http.post("/api/v1/training").status_code in (200, 202)
        server.wait_for_version(1)
        yield server


@pytest.fixture(scope="package")
def warm_cache(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache that holds version 1's TFLite int8 files (what an agent keeps after its first start)."""
    cache = tmp_path_factory.mktemp("watch-cache")
    client = ServerClient(server.url, None)
    ModelStore(cache, ModelChoice.TFLITE_INT8).fetch(client, client.current_version())
    client.close()
    return cache


def copy_cache(cache: Path, into: Path) -> Path:
    shutil.copytree(cache, into)
    return into


@dataclass
class Subscriber:
    """A paho client on the real broker, collecting ``(topic, payload, retained)``."""

    topics: list[str]
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: Any = None

    def __enter__(self) -> Subscriber:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)

        def on_message(client: Any, userdata: Any, message: Any) -> None:
            with self.lock:
                self.messages.append((message.topic, message.payload, bool(message.retain)))

        self.client.on_message = on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(*BROKER)
        self.client.subscribe([(topic, 1) for topic in self.topics])
        self.client.loop_start()
        assert subscribed.wait(10), "the broker did not confirm the subscription"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def payloads(self, topic: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(payload) for t, payload, _ in self.messages if t == topic and payload]

    def payloads_raw(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def retained(self) -> dict[str, bytes]:
        with self.lock:
            return {t: payload for t, payload, retained in self.messages if retained and payload}


def clear_retained(topics: list[str]) -> None:
    """Delete retained messages the test left on the machine's broker."""
    publish_retained({topic: b"" for topic in topics})


def publish_retained(messages: dict[str, bytes]) -> None:
    """Leave ``messages`` (topic -> payload) retained on the machine's broker, as another client would."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(*BROKER)
    client.loop_start()
    for topic, payload in messages.items():
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def retained_on_broker(topics: list[str]) -> dict[str, bytes]:
    """What a new subscriber to ``topics`` is given as retained, all of it: the broker hands the
    retained messages over as it subscribes, before a message published after that, so once a marker
    published then is in, every retained one is."""
    marker = f"marker-{uuid.uuid4().hex}"
    with Subscriber([*topics, marker]) as fresh:
        fresh.client.publish(marker, b"in", qos=1)
        wait_for(lambda: fresh.payloads_raw(marker), timeout=10, what="the marker")
        return fresh.retained()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def watch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        faceforge_command("-v", "watch", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str], timeout: float = 180) -> tuple[list[dict[str, Any]], str]:
    """Wait for an agent; returns its decisions (stdout) and its log (stderr)."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()], err


def read_decisions(process: subprocess.Popen[str], count: int, timeout: float = 120) -> list[dict[str, Any]]:
    """The agent's first ``count`` stdout lines, as they come, or fewer once ``timeout`` has passed:
    a blocking readline waited for ever on an agent that printed fewer (a test hung for minutes)."""
    assert process.stdout is not None
    # Byte by byte from the descriptor: nothing is read past the last line returned, so a later
    # call or communicate() goes on exactly there (the text wrapper's buffer would hide lines from
    # select).
    descriptor = process.stdout.fileno()
    decisions: list[dict[str, Any]] = []
    line = b""
    deadline = time.monotonic() + timeout
    while len(decisions) < count and (remaining := deadline - time.monotonic()) > 0:
        if not select.select([descriptor], [], [], remaining)[0]:
            break
        byte = os.read(descriptor, 1)
        if not byte:
            break
        if byte != b"\n":
            line += byte
        elif line.strip():
            decisions.append(json.loads(line))
            line = b""
    return decisions
