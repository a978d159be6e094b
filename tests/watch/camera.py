"""A live HTTP (MJPEG) camera for the agent's tests, as IP cameras and Frigate's restream serve
them: ``multipart/x-mixed-replace`` JPEGs of real photos arriving in real time over a socket, from a
real HTTP server on a free port."""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from tests.api.fixtures import free_port
from tests.watch.conftest import FRAME

RATE = 10  # frames per second, as a camera's substream
HELD = 12  # frames each photo is shown: tracks decide from 3
GAP = 12  # grey frames after each: more than tracking.MAX_MISSED, so each photo is a track of its own


def picture(photo: Path | None) -> Image.Image:
    """A camera frame: ``photo`` in the middle of a grey scene, or the empty scene."""
    frame = Image.new("RGB", FRAME, (90, 90, 90))
    if photo is not None:
        with Image.open(photo) as opened:
            shown = opened.convert("RGB")
        frame.paste(shown, ((FRAME[0] - shown.width) // 2, (FRAME[1] - shown.height) // 2))
    return frame


def _jpeg(photo: Path | None) -> bytes:
    out = io.BytesIO()
    picture(photo).save(out, "JPEG", quality=90)
    return out.getvalue()


class Camera:
    """Serves ``first`` on the first connection and then breaks it (a camera rebooting, a flaky
    Wi-Fi link); every later connection gets ``second`` and then grey frames until ``stop()``."""

    def __init__(self, first: list[Path | None], second: list[Path | None]) -> None:
        grey = _jpeg(None)
        showing = (
            [[_jpeg(p)] * HELD + [grey] * GAP for p in first],
            [[_jpeg(p)] * HELD + [grey] * GAP for p in second],
        )
        self.connections = itertools.count()
        self.stopped = threading.Event()
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # the test reads the agent's log, not this
                pass

            def do_GET(self) -> None:
                number = next(camera.connections)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                frames: Iterator[bytes] = itertools.chain.from_iterable(showing[min(number, 1)])
                if number > 0:
                    frames = itertools.chain(frames, itertools.repeat(grey))
                try:
                    for jpeg in frames:
                        if camera.stopped.is_set():
                            return
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                        self.wfile.write(head.encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                        time.sleep(1 / RATE)
                except (BrokenPipeError, ConnectionResetError):  # the agent went away
                    return
                # The first connection ends here: the socket closes mid-stream, no closing boundary.

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()
