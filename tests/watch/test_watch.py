"""``faceforge watch`` end to end: a real server's exported files, videos of real photos, the
machine's real Mosquitto."""

from __future__ import annotations

import functools
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from faceforge.cli.main import app
from faceforge.core.config import Settings
from faceforge.edge.agent import ModelUpdates
from faceforge.edge.choices import ModelChoice
from faceforge.edge.errors import WatchError
from faceforge.edge.models import CURRENT_FILE, ModelStore, ServerClient
from faceforge.edge.publish import slug
from faceforge.edge.source import is_live, open_source
from faceforge.edge.watch import _first_model
from tests.api.fixtures import faceforge_server, free_port, heavy_libraries_loaded, wait_for
from tests.conftest import answer
from tests.watch.camera import Camera
from tests.watch.conftest import (
    NEWCOMER,
    PEOPLE,
    STRANGERS,
    Server,
    Subscriber,
    clear_retained,
    copy_cache,
    finish,
    probes,
    read_decisions,
    unique,
    watch,
    write_video,
)
from tests.watch.proxy import TcpProxy
from tests.watch.rtsp_camera import RtspCamera

runner = CliRunner()
SHOWN = [*probes(PEOPLE[0]), STRANGERS[0], *probes(PEOPLE[1]), STRANGERS[1], *probes(PEOPLE[2]), STRANGERS[2]]
EXPECTED = [path.parent.name if path.parent.name in PEOPLE else None for path in SHOWN]


def check_decisions(decisions: list[dict[str, Any]], camera: str) -> None:
    """One decision per photo shown; every enrolled person named, no stranger named, no one misnamed."""
    assert len(decisions) == len(SHOWN), decisions
    names = [d["name"] for d in decisions]
    for name, expected in zip(names, EXPECTED, strict=True):
        assert name in (expected, None), (names, EXPECTED)  # a missed probe is allowed, a wrong name not
    assert set(PEOPLE) <= set(names), names
    for decision in decisions:
        assert decision["camera"] == camera and decision["version"] >= 1
        assert set(decision) == {"camera", "name", "person_id", "probability", "box", "time", "version"}
        assert (decision["person_id"] is None) == (decision["name"] is None)
        x, y, width, height = decision["box"]
        assert 150 < x + width / 2 < 490 and 90 < y + height / 2 < 390  # the photo is centred


def test_watch_names_people_on_mqtt_with_discovery(server: Server, tmp_path: Path) -> None:
    video = tmp_path / "door.avi"
    write_video(video, SHOWN, codec="mjpeg")
    camera, prefix = unique("door"), unique("test-ha")
    # Its own first level: two servers' agents on one broker must not share people's topics (ids start
    # at 1 on every server) nor Home Assistant unique ids (a tester had two overwrite each other).
    base = unique("home-one")
    topic = f"{base}/{camera}/person"
    with Subscriber([topic]) as decisions_seen:
        agent = watch(
            str(video),
            *("--server", server.url, "--camera", camera, "--mqtt", "mqtt://127.0.0.1:1883"),
            *("--cache", str(tmp_path / "cache"), "--discovery-prefix", prefix, "--topic-prefix", base),
        )
        first = read_decisions(agent, 1)
        assert not {"torch", "coremltools"} & set(heavy_libraries_loaded(agent.pid))
        rest, log = finish(agent)
        assert "lost the MQTT broker" not in log  # its own goodbye is no lost broker (it said so)
        printed = first + rest
        check_decisions(printed, camera)
        wait_for(
            lambda: len(decisions_seen.payloads(topic)) == len(printed), timeout=30, what="MQTT decisions"
        )
        assert decisions_seen.payloads(topic) == printed  # the same JSON as stdout, in order
    # Subscribing afterwards: the discovery configs were retained.
    with Subscriber([f"{prefix}/#", f"{base}/{camera}/status"]) as late:
        wait_for(lambda: len(late.retained()) >= 1 + len(PEOPLE) + 1, timeout=10, what="retained configs")
        retained = late.retained()
    try:
        configs = {t: json.loads(p) for t, p in retained.items() if t.startswith(prefix)}
        node = slug(base)
        camera_config = configs[f"{prefix}/sensor/{node}/{camera}_person/config"]
        assert camera_config["state_topic"] == topic and camera_config["json_attributes_topic"] == topic
        assert camera_config["unique_id"] == f"{node}_{camera}_person"
        people = [c for t, c in configs.items() if "_last_seen/" in t]
        assert sorted(c["name"] for c in people) == sorted(f"{p} last seen" for p in PEOPLE)
        assert all(c["device_class"] == "timestamp" and c["unique_id"].startswith(f"{node}_") for c in people)
        assert all(c["state_topic"].startswith(f"{base}/people/") for c in people)
        assert retained[f"{base}/{camera}/status"] == b"offline"  # the agent said goodbye
    finally:
        clear_retained(
            [*retained, *(f"{base}/people/{d['person_id']}/last_seen" for d in printed if d["person_id"])]
        )


def test_onnx_on_h264_keeps_decisions_through_a_broker_outage(
    server: Server, warm_cache: Path, tmp_path: Path
) -> None:
    video = tmp_path / "yard.mp4"
    write_video(video, SHOWN, codec="libx264")
    camera = unique("yard")
    topic = f"faceforge/{camera}/person"
    proxy = TcpProxy(18000 + int(camera[-4:], 16) % 900, ("127.0.0.1", 1883))
    with Subscriber([topic]) as seen:
        agent = watch(
            str(video),
            *("--server", server.url, "--camera", camera, "--model", "onnx", "--drain", "120"),
            *("--mqtt", f"mqtt://127.0.0.1:{proxy.port}", "--cache", str(tmp_path / "cache")),
        )
        printed = read_decisions(agent, len(SHOWN))  # decided while the broker is unreachable
        check_decisions(printed, camera)
        assert seen.payloads(topic) == []
        proxy.start()  # the broker comes back: paho's queue is sent
        try:
            rest, _ = finish(agent)
            assert rest == []
            wait_for(lambda: len(seen.payloads(topic)) == len(printed), timeout=30, what="queued decisions")
            assert seen.payloads(topic) == printed
        finally:
            proxy.stop()
            clear_retained([f"faceforge/{camera}/status"])


def test_unsent_decisions_wait_in_the_spool_for_the_next_start(warm_cache: Path, tmp_path: Path) -> None:
    video = tmp_path / "gate.avi"
    write_video(video, SHOWN[:3], codec="mjpeg")
    cache = copy_cache(warm_cache, tmp_path / "cache")
    camera = unique("gate")
    topic = f"faceforge/{camera}/person"
    port = 18900 + int(camera[-4:], 16) % 99
    common = ("--camera", camera, "--cache", str(cache), "--mqtt", f"mqtt://127.0.0.1:{port}")
    printed, log = finish(watch(str(video), *common, "--drain", "0.5"))  # no broker at all
    assert len(printed) == 3 and "kept in" in log
    # Said as soon as it happens, once, not only at exit.
    assert log.count(f"cannot reach the MQTT broker 127.0.0.1:{port}; retrying") == 1, log
    proxy = TcpProxy(port, ("127.0.0.1", 1883))
    with Subscriber([topic]) as seen:
        proxy.start()
        try:
            blank = tmp_path / "blank.avi"
            write_video(blank, [], codec="mjpeg")
            assert finish(watch(str(blank), *common))[0] == []  # nothing new: the spool is sent
            wait_for(lambda: len(seen.payloads(topic)) == 3, timeout=30, what="spooled decisions")
            assert seen.payloads(topic) == printed
        finally:
            proxy.stop()
            clear_retained([f"faceforge/{camera}/status"])


def test_a_new_version_while_watching_downloads_only_the_head(
    server: Server, warm_cache: Path, device_backbones: Settings, tmp_path: Path
) -> None:
    """A new version is fetched by its head alone; then the server has no version at all (every
    person deleted: ``GET /models/current`` answers 409 ``model_not_ready``, as a server with nobody
    enrolled does). That was taken for an unreachable server: the agent named the deleted people from
    its cache for ever, and a restart named them again. It names nobody, forgets the cached version,
    says so once, and fetches the next version the server has."""
    video = tmp_path / "hall.avi"
    write_video(video, [probes(NEWCOMER)[0]] * 60, codec="mjpeg")
    cache = copy_cache(warm_cache, tmp_path / "cache")
    backbone = next(p for p in (cache / "blobs").iterdir() if p.stat().st_size > 10_000_000)
    inode = backbone.stat().st_ino
    served = httpx.URL(server.url)
    proxy = TcpProxy(free_port(), (served.host, served.port or 80))
    proxy.start()
    url = f"http://127.0.0.1:{proxy.port}"
    agent = watch(str(video), "--realtime", "--server", url, "--poll", "0.3", "--cache", str(cache))
    try:
        (before,) = read_decisions(agent, 1)
        assert before["name"] is None and before["version"] == 1  # not enrolled yet: a stranger
        person_id = server.enrol(NEWCOMER)
        # A server with nobody enrolled, started while version 2 trains: its answer is the one a
        # server gives after every person was deleted (``ModelService.current``).
        with faceforge_server(tmp_path / "empty-server", device_backbones) as empty:
            server.wait_for_version(2)
            named = next_decision(agent, lambda d: d["version"] == 2)
            assert named["name"] == NEWCOMER and named["person_id"] == person_id

            proxy.retarget(("127.0.0.1", empty.port))  # the server has no version
            nobody = [next_decision(agent, lambda d: d["name"] is None), *read_decisions(agent, 1)]
            # A stranger for sure, not with the deleted person's probability (it said 0.99).
            assert [(d["name"], d["person_id"], d["probability"]) for d in nobody] == [(None, None, 1.0)] * 2
            assert not (cache / CURRENT_FILE).exists()  # a restart names nobody either
            restarted = ModelStore(copy_cache(warm_cache, tmp_path / "restart"), ModelChoice.TFLITE_INT8)
            client = ServerClient(url, None)
            try:
                with pytest.raises(WatchError, match="the server has no model version"):
                    _first_model(restarted, client, ModelUpdates(restarted, client, 1, None), wait=False)
            finally:
                client.close()
            assert restarted.cached() is None
            proxy.retarget((served.host, served.port or 80))  # a version again
        again = next_decision(agent, lambda d: d["name"] is not None)
        assert again["name"] == NEWCOMER and again["version"] == 2
    finally:
        agent.send_signal(signal.SIGTERM)
        _, log = agent.communicate(timeout=60)
        proxy.stop()
    assert "model version 2: downloaded head.tflite; reused backbone_int8.tflite, refiner.tflite" in log
    assert backbone.stat().st_ino == inode  # the backbone file was not written again
    assert log.count("the server has no model version") == 1, log


def next_decision(agent: subprocess.Popen[str], wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The agent's first decision from now on that is ``wanted`` (within 15 decisions)."""
    for _ in range(15):
        decisions = read_decisions(agent, 1)
        assert decisions, "the agent printed no more decisions"
        if wanted(decisions[0]):
            return decisions[0]
    raise AssertionError("no such decision among the next 15")


def test_offline_with_the_server_gone_uses_the_cached_model(warm_cache: Path, tmp_path: Path) -> None:
    video = tmp_path / "porch.avi"
    write_video(video, SHOWN, codec="mjpeg")
    cache = copy_cache(warm_cache, tmp_path / "cache")
    gone = "http://127.0.0.1:18999"  # nothing listens: the server is stopped
    printed, log = finish(watch(str(video), "--server", gone, "--camera", "porch", "--cache", str(cache)))
    assert "running offline on version 1" in log
    assert "XNNPACK" not in log, "LiteRT's native INFO line is left out"
    check_decisions(printed, "porch")


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _watch_served(video: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """``faceforge watch`` of ``video`` fetched from a plain HTTP file server (no range requests, as
    Python's own), with the cached model and no faceforge server."""
    gone = "http://127.0.0.1:18996"  # the cached version is enough
    handler = functools.partial(_QuietFiles, directory=str(video.parent))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{web.server_port}/{video.name}"
        agent = watch(url, "--server", gone, "--camera", "porch", "--cache", str(cache))
        try:
            out, err = agent.communicate(timeout=120)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
            web.shutdown()
    return subprocess.CompletedProcess(agent.args, agent.returncode, out, err)


def test_a_recording_fetched_by_url_is_read_to_its_end_like_a_file(warm_cache: Path, tmp_path: Path) -> None:
    """An MP4 over HTTP was taken for a camera because of its scheme: decoded newest-frame-only (frames
    dropped) and opened again for ever at its end. It says how long it lasts, so it is read like a
    file: every photo decided, then the agent stops."""
    video = tmp_path / "recordings" / "porch.mp4"
    video.parent.mkdir()
    write_video(video, SHOWN, codec="libx264", options={"movflags": "faststart"})
    done = _watch_served(video, copy_cache(warm_cache, tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    assert "opening it again" not in done.stderr
    check_decisions([json.loads(line) for line in done.stdout.splitlines() if line.strip()], "porch")


class _Endless(BaseHTTPRequestHandler):
    """A file sent as a live camera or a restream sends its stream: chunked, no length given."""

    protocol_version = "HTTP/1.1"
    folder: Path

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        data = (self.folder / Path(self.path).name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(data), 4096):
            chunk = data[start : start + 4096]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


@pytest.mark.parametrize(("sized", "live"), [(True, False), (False, True)], ids=["file", "stream"])
def test_a_url_is_a_recording_only_when_it_gives_its_size(tmp_path: Path, sized: bool, live: bool) -> None:
    """FFmpeg reports a duration for a live fragmented MP4 too (what it probed of it): a URL is a
    recording only when its server also says how many bytes it has."""
    video = tmp_path / "clip.mp4"
    write_video(video, SHOWN[:1], codec="libx264", options={"movflags": "faststart"})
    handler: Any = functools.partial(_QuietFiles, directory=str(tmp_path))
    if not sized:
        handler = type("EndlessHere", (_Endless,), {"folder": tmp_path})
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{web.server_port}/clip.mp4"
        container = open_source(url)
        try:
            assert container.duration > 0  # both say how long: only the size tells them apart
            assert is_live(url, container) is live
        finally:
            container.close()
            web.shutdown()


def test_a_recording_that_breaks_while_read_ends_with_one_line(warm_cache: Path, tmp_path: Path) -> None:
    """An MP4 with its index at the end, from a server that cannot seek: FFmpeg fails midway with an
    input/output error, which ended the agent with a traceback. It now says so in one line."""
    video = tmp_path / "recordings" / "porch.mp4"
    video.parent.mkdir()
    write_video(video, SHOWN, codec="libx264")
    done = _watch_served(video, copy_cache(warm_cache, tmp_path / "cache"))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot read http://127.0.0.1:") and "porch.mp4: " in last, last
    assert "faststart" in last  # what to do about it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/video.mp4"], "no such video file"),
        (["rtsp://127.0.0.1:18998/stream"], "cannot open rtsp://127.0.0.1:18998/stream"),
        (["video.mp4", "--mqtt", "http://broker:1883"], "--mqtt must look like mqtt://host:port"),
        # The password was said with the rest of the URL (a service's journal keeps it).
        (
            ["video.mp4", "--mqtt", "mqtt://u:s3cret@broker:99999"],
            "invalid port: 'mqtt://u:***@broker:99999'",
        ),
        (["video.mp4", "--mqtt", "mqtts://u:s3cret@[broker"], "'mqtts://u:***@[broker'"),
        (["video.mp4", "--mqtt", "mqtt://u:pa/ss@broker:1883"], "'mqtt://u:***@broker:1883'"),
        (["video.mp4", "--mqtt", "mqtt://u:p@ss@broker:99999"], "'mqtt://u:***@broker:99999'"),
        # It retried for ever ("missing an 'http://' or 'https://' protocol").
        (["video.mp4", "--server", "notaurl"], "--server must look like http://host:port"),
        (["video.mp4", "--server", "ftp://host"], "--server must look like http://host:port"),
        (["video.mp4", "--server", "http://host:99999"], "--server must look like http://host:port"),
        (["video.mp4", "--topic-prefix", "home/#"], "--topic-prefix must be a topic level"),
        (["video.mp4", "--topic-prefix", ""], "--topic-prefix must be a topic level"),
        (["video.mp4", "--topic-prefix", "home/faceforge"], "--topic-prefix must be a topic level"),
        # A wildcard ended paho's thread with a traceback and the agent exited 0; "" published the
        # Home Assistant configs under /sensor/...
        (["video.mp4", "--discovery-prefix", "homeassistant/#"], "--discovery-prefix must be"),
        (["video.mp4", "--discovery-prefix", ""], "--discovery-prefix must be"),
        # "a/b" and "a+b" both published on faceforge/a_b/..., one camera overwriting the other;
        # "" published as "camera" with a Home Assistant sensor named " last person".
        (["video.mp4", "--camera", "a/b"], "--camera must name the camera"),
        (["video.mp4", "--camera", "a+b"], "--camera must name the camera"),
        (["video.mp4", "--camera", "front/#"], "--camera must name the camera"),
        (["video.mp4", "--camera", ""], "--camera must name the camera"),
        (["video.mp4", "--camera", " !? "], "--camera must name the camera"),
    ],
)
def test_bad_input_exits_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    started = time.monotonic()
    result = runner.invoke(app, ["watch", *args, "--cache", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert time.monotonic() - started < 15


def test_watch_needs_a_server_once(tmp_path: Path) -> None:
    video = tmp_path / "v.avi"
    write_video(video, [], codec="mjpeg")
    result = runner.invoke(app, ["watch", str(video), "--cache", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "give --server URL once" in result.output


def test_a_wrong_server_path_is_said_in_one_line(tmp_path: Path) -> None:
    """``--server http://host:port/wrong/path`` exited 2 with httpx's two lines (the status, then a
    link to MDN): a one-line reason in two."""
    video = tmp_path / "v.avi"
    write_video(video, [], codec="mjpeg")
    (tmp_path / "www").mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # not on the command's stderr
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path / "www"))
    web = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # answers 404 to every model route
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{web.server_address[1]}/wrong/path"
        result = runner.invoke(app, ["watch", str(video), "--server", url, "--cache", str(tmp_path / "c")])
    finally:
        web.shutdown()
        web.server_close()
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"404 File not found for {url}/api/v1/models/current" in lines[0], result.output


def test_a_download_the_server_refuses_is_said_in_its_words(tmp_path: Path) -> None:
    """A file route answering an error (a proxy's 502, the server's 503) is read before it is said:
    unread, the streamed answer's words raised ResponseNotRead from the error's own report, which
    ended the agent's update thread for good."""
    from faceforge.edge.models import server_failure

    class Busy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"error": {"code": "storage_unavailable", "message": "try again"}}).encode()
            answer(self, 503, body, "application/json")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    web = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    client = ServerClient(f"http://127.0.0.1:{web.server_address[1]}", None)
    try:
        with pytest.raises(httpx.HTTPStatusError) as refused:
            client.download(1, "model.onnx", tmp_path / "model.onnx", "0" * 64)
        said = server_failure(refused.value)
    finally:
        client.close()
        web.shutdown()
        web.server_close()
    assert said.startswith("503 Service Unavailable for http://127.0.0.1:") and said.endswith(": try again")
    assert not (tmp_path / "model.onnx").exists()


def test_a_video_file_is_not_kept_waiting_for_a_server_that_is_down(tmp_path: Path) -> None:
    video = tmp_path / "v.avi"
    write_video(video, [], codec="mjpeg")
    gone = "http://127.0.0.1:18999"  # nothing listens
    command = [sys.executable, "-m", "faceforge.cli.main", "watch", str(video), "--server", gone]
    # It waited with back-off for ever, as for a camera: the timeout fails the test.
    done = subprocess.run(
        [*command, "--cache", str(tmp_path / "empty")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no model from the server (") and "and none cached in" in last


# A live stream (not a file): frames arrive in real time, the agent's decoding thread keeps the newest
# one, and a stream that breaks is opened again with back-off. HTTP MJPEG, and RTSP over TCP with
# H.264 as IP cameras and Frigate's restream serve it (FFmpeg's demuxer with faceforge's options).
@pytest.mark.parametrize("kind", [Camera, RtspCamera], ids=["mjpeg", "rtsp"])
def test_a_live_stream_is_watched_and_reopened_when_it_breaks(
    warm_cache: Path, tmp_path: Path, kind: type[Camera | RtspCamera]
) -> None:
    cache = copy_cache(warm_cache, tmp_path / "cache")
    camera = kind(first=[probes(PEOPLE[0])[0], STRANGERS[0]], second=[probes(PEOPLE[1])[0]])
    gone = "http://127.0.0.1:18997"  # the cached version is enough: no server needed
    agent = watch(camera.url, "--server", gone, "--camera", "gate", "--cache", str(cache))
    try:
        decisions = read_decisions(agent, 3, timeout=90)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, log = agent.communicate(timeout=60)
        camera.stop()
    assert agent.returncode == 0, log
    names = [decision["name"] for decision in decisions]
    # The first connection's person, its stranger, then (after the reopen) the second's person.
    assert names == [PEOPLE[0], None, PEOPLE[1]], (names, log)
    assert next(camera.connections) >= 2, log  # it came back for more after the stream broke
    assert all(decision["camera"] == "gate" and decision["version"] == 1 for decision in decisions)


def test_stopping_waits_for_a_model_check_and_logs_nothing_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent's last line is its reason for ending: a model check that failed while the agent
    stopped logged "cannot reach the server" after that line (a test reading it failed now and then)."""
    from faceforge.edge import agent
    from faceforge.edge.choices import ModelChoice
    from faceforge.edge.models import ModelStore

    checking, release = threading.Event(), threading.Event()

    class GoneServer:
        def current_version(self) -> int:
            checking.set()
            release.wait(10)
            raise ConnectionError("connection refused")

    gone: Any = GoneServer()  # the one method ModelUpdates calls of a ServerClient
    updates = agent.ModelUpdates(ModelStore(tmp_path, ModelChoice.ONNX), gone, 60.0, None)
    with caplog.at_level(logging.WARNING, logger=agent.__name__):
        updates.start()
        assert checking.wait(10)
        threading.Timer(0.2, release.set).start()  # the check fails while stop() waits for it
        updates.stop()
        stopped_at = len(caplog.records)
        time.sleep(0.3)
    assert release.is_set()  # stop() waited for the check in flight
    assert len(caplog.records) == stopped_at == 0, [r.getMessage() for r in caplog.records]


def test_a_server_that_stays_down_is_reported_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every failed check (1, 2, 5 ... s apart) logged the same warning again: a log full of one line
    while the server was down, as the broker's outages are not."""
    from faceforge.edge import agent
    from faceforge.edge.choices import ModelChoice
    from faceforge.edge.models import ModelStore, ServerClient

    checks: list[int] = []
    with socket.socket() as down:  # answers every connection by closing it: no HTTP server there
        down.bind(("127.0.0.1", 0))
        down.listen()
        down.settimeout(30)

        def hang_up() -> None:
            for _ in range(2):
                connection, _ = down.accept()
                connection.close()
                checks.append(1)

        server = ServerClient(f"http://127.0.0.1:{down.getsockname()[1]}", None)
        warnings: list[list[str]] = []
        # As started on its own, then as started offline from the cache: the start has said it (the
        # updates said it again, two warnings for one outage).
        for said_at_start in (False, True):
            updates = agent.ModelUpdates(ModelStore(tmp_path, ModelChoice.ONNX), server, 60.0, None)
            if said_at_start:
                updates.running(1, unreachable_said=True)
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger=agent.__name__):
                updates.start()
                hang_up()  # two checks failed (the second a second later, after the back-off)
                time.sleep(0.5)  # the second one's log line
                updates.stop()
            warnings.append([r.getMessage() for r in caplog.records])
        server.close()
    assert len(checks) == 4 and len(warnings[0]) == 1 and "cannot reach the server" in warnings[0][0], (
        warnings
    )
    assert warnings[1] == []


def test_an_offline_start_does_not_fetch_its_version_again(
    server: Server, warm_cache: Path, tmp_path: Path
) -> None:
    """Started from the cache while the server could not be reached, the agent's first answer from
    the server fetched that same version again: current.json rewritten, the graphs loaded again and
    discovery announced again (the updates were told of no version)."""
    store = ModelStore(copy_cache(warm_cache, tmp_path / "cache"), ModelChoice.TFLITE_INT8)
    direct = ServerClient(server.url, None)
    current = direct.current_version()
    store.fetch(direct, current)  # the server's current version is the cached one
    direct.close()
    written = (store.directory / CURRENT_FILE).stat().st_mtime_ns
    address = httpx.URL(server.url)
    proxy = TcpProxy(free_port(), (address.host, address.port or 80))  # not started: the server is away
    through = ServerClient(f"http://127.0.0.1:{proxy.port}", None)
    updates = ModelUpdates(store, through, 60.0, None)
    try:
        assert _first_model(store, through, updates, wait=False).version == current  # offline
        proxy.start()  # the server answers again
        assert updates.check() is None  # nothing new to load
    finally:
        proxy.stop()
        through.close()
    assert (store.directory / CURRENT_FILE).stat().st_mtime_ns == written


def test_the_server_back_is_said_as_loudly_as_its_outage(
    server: Server, warm_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The outage was a warning and the return an info line, which the default level hides: a
    tester's log ended on "cannot reach the server" while the agent had long taken a new version."""
    from faceforge.edge import agent

    store = ModelStore(copy_cache(warm_cache, tmp_path / "cache"), ModelChoice.TFLITE_INT8)
    address = httpx.URL(server.url)
    proxy = TcpProxy(free_port(), (address.host, address.port or 80))  # not started: the server is away
    through = ServerClient(f"http://127.0.0.1:{proxy.port}", None)
    updates = ModelUpdates(store, through, 60.0, None)

    def said(text: str) -> bool:
        return any(text in record.getMessage() for record in caplog.records)

    try:
        with caplog.at_level(logging.WARNING, logger=agent.__name__):
            updates.start()
            wait_for(lambda: said("cannot reach the server"), timeout=30, what="the outage's warning")
            proxy.start()
            wait_for(lambda: said("the server answers again"), timeout=30, what="the return, as a warning")
    finally:
        updates.stop()
        proxy.stop()
        through.close()


def test_unsent_decisions_wait_per_topic_prefix() -> None:
    """Decisions kept while the broker was away under one --topic-prefix went out under whatever prefix
    the next run had: each prefix keeps its own file (the default one keeps its earlier name)."""
    from faceforge.edge.watch import spool_file

    assert spool_file("faceforge", "gate") == "unsent-gate.jsonl"  # as before: kept files still go out
    assert spool_file("faceforge/", "gate") == "unsent-gate.jsonl"
    assert spool_file("tester", "gate") != spool_file("faceforge", "gate")
    assert spool_file("home", "gate") != spool_file("office", "gate")
    assert spool_file("faceforge", "tester-gate") != spool_file("tester", "gate")  # a reviewer's pairs
    assert spool_file("home", "front-door") != spool_file("home-front", "door")


def test_a_camera_waiting_for_its_first_model_checks_at_least_every_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Waiting for the server (down, or with no version yet), the back-off grew to a minute whatever
    --poll said: the first person enrolled was named up to a minute late."""
    import time as clock

    from faceforge.edge import watch as watch_module

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 6:
            raise KeyboardInterrupt  # enough: the agent's Ctrl-C

    monkeypatch.setattr(clock, "sleep", sleep)  # the agent's waits, not waited for
    store = ModelStore(tmp_path / "cache", ModelChoice.ONNX)
    gone = ServerClient(f"http://127.0.0.1:{free_port()}", None)  # nothing listens there
    with caplog.at_level(logging.WARNING, logger=watch_module.__name__), pytest.raises(KeyboardInterrupt):
        _first_model(store, gone, ModelUpdates(store, gone, 3.0, None))
    gone.close()
    assert waits == [1, 2, 3, 3, 3, 3], waits
    (said,) = [record.getMessage() for record in caplog.records]
    assert "at most every 3 s" in said, said
