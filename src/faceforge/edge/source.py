"""Frames from a video file (local or by URL), an RTSP or HTTP (MJPEG) stream, or a V4L2 device,
decoded by PyAV.

PyAV's wheels bundle FFmpeg (H.264, H.265, MJPEG, RTSP, V4L2), so the light install decodes what
cameras send without a system FFmpeg. A file is read frame by frame, every frame (``realtime``:
paced at its frame rate, as a camera would deliver it). A stream or device is decoded on a thread of
its own that keeps only the newest frame: when the agent cannot keep up, frames are dropped, never
queued. A stream that breaks is opened again with back-off.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faceforge.edge.errors import WatchError

log = logging.getLogger(__name__)

Frame = npt.NDArray[np.uint8]  # (H, W, 3) RGB
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")
OPEN_TIMEOUT_US = "5000000"  # FFmpeg's socket timeouts, microseconds
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
STOP_WAIT_SECONDS = 2 * float(OPEN_TIMEOUT_US) / 1e6  # FFmpeg's own timeout, with as much again


def is_stream(source: str) -> bool:
    return source.startswith(STREAM_SCHEMES)


def is_live(source: str, container: Any) -> bool:
    """A camera: a V4L2 device, or a stream that does not say both how long it lasts and how many
    bytes it has. A recording fetched by URL (an MP4 file over HTTP) says both: it is read like a
    file, every frame to its end, not kept newest-frame-only and reopened for ever when it ends. A
    duration alone is not enough: a live fragmented MP4 (go2rtc's) reports what FFmpeg probed of
    it, and a live FLV 0, but neither has a size (``avio_size``: negative when the server does not
    say)."""
    if source.startswith("/dev/"):
        return True
    if not is_stream(source):
        return False
    return not ((container.duration or 0) > 0 and (container.size or 0) > 0)


def _open(source: str) -> Any:
    import av

    if source.startswith("/dev/video"):
        return av.open(source, format="v4l2")
    if is_stream(source):
        options = {"timeout": OPEN_TIMEOUT_US}
        if source.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = "tcp"
        return av.open(source, options=options, timeout=float(OPEN_TIMEOUT_US) / 1e6)
    if not Path(source).is_file():
        raise WatchError(f"no such video file: {source}")
    return av.open(source)


def open_source(source: str) -> Any:
    """Open ``source`` once, or raise ``WatchError`` with FFmpeg's reason (a missing file, a stream
    that refuses, a file that is not a video)."""
    import av

    try:
        container = _open(source)
    except av.FFmpegError as error:
        raise WatchError(f"cannot open {source}: {error.strerror or error}") from None
    if not container.streams.video:
        container.close()
        raise WatchError(f"{source} has no video stream")
    return container


def _decode(container: Any) -> Iterator[Frame]:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    for frame in container.decode(stream):
        yield frame.to_ndarray(format="rgb24")


def file_frames(container: Any, *, realtime: bool = False) -> Iterator[Frame]:
    """Every frame of a file, in order (paced at the file's frame rate when ``realtime``). A file
    that cannot be read on (a recording whose server fails midway) raises ``WatchError``."""
    import av

    rate = container.streams.video[0].average_rate
    period = 1.0 / float(rate) if realtime and rate else 0.0
    start = time.monotonic()
    try:
        for index, frame in enumerate(_decode(container)):
            if period:
                time.sleep(max(0.0, start + index * period - time.monotonic()))
            yield frame
    except av.FFmpegError as error:
        hint = ""
        if is_stream(container.name) and isinstance(error, OSError) and error.errno == errno.EIO:
            # Python's http.server and other plain file servers cannot seek: an MP4 with its index
            # at the end fails there (measured), a faststart one plays.
            hint = (
                " (an MP4 by URL needs its index first, i.e. faststart,"
                " or a server that answers range requests)"
            )
        raise WatchError(f"cannot read {container.name}: {error.strerror or error}{hint}") from None
    finally:
        container.close()


class LiveFrames:
    """The newest frame of a stream or device; decoding runs on its own thread and reopens the
    source with back-off when it breaks, until ``stop()``."""

    def __init__(self, source: str, container: Any) -> None:
        self.source = source
        self._container = container
        self._frame: Frame | None = None
        self._fresh = threading.Condition()
        self._stopped = threading.Event()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="faceforge-decode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                container, self._container = self._container or open_source(self.source), None
                with container:
                    for frame in _decode(container):
                        failures = 0
                        with self._fresh:
                            self.dropped += self._frame is not None
                            self._frame = frame
                            self._fresh.notify()
                        if self._stopped.is_set():
                            return
                log.warning("%s ended; opening it again", self.source)
            except Exception as error:  # FFmpeg and network errors vary: every one means reopen
                log.warning("%s: %s", self.source, error)
            delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
            failures += 1
            self._stopped.wait(delay)

    def __iter__(self) -> Iterator[Frame]:
        while not self._stopped.is_set():
            with self._fresh:
                self._fresh.wait_for(lambda: self._frame is not None or self._stopped.is_set(), timeout=1.0)
                frame, self._frame = self._frame, None
            if frame is not None:
                yield frame

    def stop(self) -> None:
        """Stop decoding, and wait until the decode thread has left FFmpeg: a daemon thread still in
        its native code (a reopen waiting on the network) while the interpreter finalises crashed
        the agent on SIGTERM (exit -11 after its last line). FFmpeg gives up a socket within
        ``OPEN_TIMEOUT_US``, and the thread then sees the stop."""
        self._stopped.set()
        with self._fresh:
            self._fresh.notify_all()
        self._thread.join(STOP_WAIT_SECONDS)
        if self._thread.is_alive():
            log.warning("%s: the decoder did not stop within %.0f s", self.source, STOP_WAIT_SECONDS)
