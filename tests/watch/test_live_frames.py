"""A live source's decoder is out of FFmpeg before ``LiveFrames.stop()`` returns: the agent crashed on
SIGTERM (exit -11 after its last line, one CI run of the RTSP watch test) when the interpreter
finalised while the daemon decode thread was still in FFmpeg, reopening a stream that had ended."""

from __future__ import annotations

import socket
import time

from faceforge.edge.source import STOP_WAIT_SECONDS, LiveFrames


def test_stop_waits_until_the_decoder_has_left_ffmpeg() -> None:
    # A camera that accepts the connection and never answers: the decode thread sits in FFmpeg's
    # open call (its socket timeout) when the agent stops, as in a reopen after the stream ended.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        frames = LiveFrames(f"rtsp://127.0.0.1:{port}/front_door", None)
        connection, _ = silent.accept()  # FFmpeg is connected and waiting for an answer
        with connection:
            time.sleep(0.2)
            assert frames._thread.is_alive()
            started = time.monotonic()
            frames.stop()
            waited = time.monotonic() - started
            assert not frames._thread.is_alive(), "stop() returned with the decoder still in FFmpeg"
    assert waited < STOP_WAIT_SECONDS
    assert list(frames) == []  # a stopped source gives no more frames
