"""A live RTSP camera for the agent's tests, as IP cameras and Frigate's restream (go2rtc) serve them:
H.264 in RTP (RFC 6184: single NAL units, FU-A fragments) interleaved on the RTSP connection (the
agent asks for TCP), real photos arriving in real time from a real server on a free port. The server
speaks the part of RTSP (RFC 2326) a player uses: OPTIONS, DESCRIBE (an SDP), SETUP, PLAY, TEARDOWN.
Like ``camera.Camera``, the first connection shows ``first`` and then breaks; later ones show
``second`` and then grey frames until ``stop()``; each starts with ``LEAD`` grey frames."""

from __future__ import annotations

import itertools
import re
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tests.api.fixtures import free_port
from tests.watch.camera import GAP, HELD, RATE, picture
from tests.watch.conftest import FRAME

# Grey frames before the photos on every connection: FFmpeg probes a new RTSP stream for about 2.8 s
# (its default analyzeduration, measured here) and the agent drops what arrived meanwhile as stale,
# as it drops any frame it cannot keep up with.
LEAD = 4 * RATE
PAYLOAD_TYPE = 96  # dynamic, named H264/90000 by the SDP
CLOCK = 90_000  # RTP's clock for video
MTU = 1_400  # payload bytes per RTP packet: larger NAL units go as FU-A fragments
SSRC = 0x0FACE0FF
START_CODE = re.compile(rb"\x00\x00\x00?\x01")
SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=faceforge test camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
    f"m=video 0 RTP/AVP {PAYLOAD_TYPE}\r\na=rtpmap:{PAYLOAD_TYPE} H264/{CLOCK}\r\n"
    f"a=fmtp:{PAYLOAD_TYPE} packetization-mode=1\r\na=control:track0\r\n"
)


def _encode(pictures: list[Image.Image]) -> list[list[bytes]]:
    """Each picture's NAL units, H.264 from x264 with no B-frames (one access unit per picture, in
    order) and SPS/PPS before every keyframe (a player may join at any keyframe)."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = FRAME
    codec.pix_fmt = "yuv420p"
    codec.time_base = Fraction(1, RATE)
    codec.framerate = Fraction(RATE)
    codec.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x264-params": f"keyint={HELD}:repeat-headers=1",
    }
    units: list[list[bytes]] = []
    frames = [av.VideoFrame.from_ndarray(np.asarray(picture), format="rgb24") for picture in pictures]
    for index, frame in enumerate([*frames, None]):
        if frame is not None:
            frame.pts = index
        for packet in codec.encode(frame):
            units.append([unit for unit in START_CODE.split(bytes(packet)) if unit])
    assert len(units) == len(pictures), (len(units), len(pictures))
    return units


def _payloads(units: list[bytes]) -> Iterator[tuple[bytes, bool]]:
    """One access unit's RTP payloads and whether each is the unit's last (RTP's marker bit)."""
    for number, unit in enumerate(units):
        last_unit = number == len(units) - 1
        if len(unit) <= MTU:
            yield unit, last_unit
            continue
        indicator = (unit[0] & 0xE0) | 28  # FU-A, keeping the unit's NRI bits
        body = unit[1:]
        pieces = [body[start : start + MTU] for start in range(0, len(body), MTU)]
        for index, piece in enumerate(pieces):
            header = (
                (unit[0] & 0x1F) | (0x80 if index == 0 else 0) | (0x40 if index == len(pieces) - 1 else 0)
            )
            yield bytes([indicator, header]) + piece, last_unit and index == len(pieces) - 1


class RtspCamera:
    def __init__(self, first: list[Path | None], second: list[Path | None]) -> None:
        grey = _encode([picture(None)] * HELD)
        lead = _encode([picture(None)] * LEAD)
        showing = (
            lead
            + [unit for photo in first for unit in _encode([picture(photo)] * HELD + [picture(None)] * GAP)],
            lead
            + [unit for photo in second for unit in _encode([picture(photo)] * HELD + [picture(None)] * GAP)],
        )
        self.connections = itertools.count()
        self.stopped = threading.Event()
        camera = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                number = next(camera.connections)
                frames: Iterator[list[bytes]] = iter(showing[min(number, 1)])
                if number > 0:  # then grey for as long as the test runs (keyframes every HELD frames)
                    frames = itertools.chain(frames, itertools.cycle(grey))
                self.writing = threading.Lock()
                self.playing: threading.Thread | None = None
                try:
                    self._serve(frames, last=number == 0)
                except (BrokenPipeError, ConnectionResetError, OSError):  # the agent went away
                    return

            def _reply(self, cseq: str, headers: dict[str, str] | None = None, body: str = "") -> None:
                lines = ["RTSP/1.0 200 OK", f"CSeq: {cseq}"]
                lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
                lines += [f"Content-Length: {len(body)}"] if body else []
                with self.writing:
                    self.wfile.write(("\r\n".join(lines) + "\r\n\r\n" + body).encode())

            def _serve(self, frames: Iterator[list[bytes]], *, last: bool) -> None:
                while not camera.stopped.is_set():
                    first = self.rfile.read(1)
                    if not first:
                        return
                    if first == b"$":  # the player's RTCP reports, interleaved: skipped
                        length = struct.unpack("!xH", self.rfile.read(3))[0]
                        self.rfile.read(length)
                        continue
                    request = (first + self.rfile.readline()).decode().strip()
                    if not request:
                        continue
                    headers = {}
                    while line := self.rfile.readline().decode().strip():
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                    self.rfile.read(int(headers.get("content-length", "0")))
                    method, url = request.split(" ")[:2]
                    cseq = headers.get("cseq", "0")
                    if method == "OPTIONS":
                        self._reply(cseq, {"Public": "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN"})
                    elif method == "DESCRIBE":
                        base = {"Content-Type": "application/sdp", "Content-Base": url.rstrip("/") + "/"}
                        self._reply(cseq, base, SDP)
                    elif method == "SETUP":
                        transport = "RTP/AVP/TCP;unicast;interleaved=0-1"
                        self._reply(cseq, {"Transport": transport, "Session": "1;timeout=60"})
                    elif method == "PLAY":
                        self._reply(cseq, {"Session": "1", "Range": "npt=0.000-"})
                        self.playing = threading.Thread(target=self._play, args=(frames, last), daemon=True)
                        self.playing.start()
                    elif method == "TEARDOWN":
                        self._reply(cseq, {"Session": "1"})
                        return
                    else:
                        with self.writing:
                            self.wfile.write(f"RTSP/1.0 501 Not Implemented\r\nCSeq: {cseq}\r\n\r\n".encode())

            def _play(self, frames: Iterator[list[bytes]], last: bool) -> None:
                sequence = itertools.count()
                try:
                    for index, units in enumerate(frames):
                        if camera.stopped.is_set():
                            return
                        for payload, marker in _payloads(units):
                            header = struct.pack(
                                "!BBHII", 0x80, (0x80 if marker else 0) | PAYLOAD_TYPE,
                                next(sequence) & 0xFFFF, index * CLOCK // RATE & 0xFFFFFFFF, SSRC,
                            )  # fmt: skip
                            packet = header + payload
                            with self.writing:
                                self.wfile.write(b"$\x00" + struct.pack("!H", len(packet)) + packet)
                        time.sleep(1 / RATE)
                    if last:  # the first connection breaks mid-stream: no TEARDOWN, no goodbye
                        self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:  # the agent went away
                    return

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"rtsp://127.0.0.1:{self.server.server_address[1]}/front_door"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()
