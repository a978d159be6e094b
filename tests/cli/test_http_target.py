"""``faceforge import --server`` over a flaky path: a proxy's 503 with ``Retry-After`` as an HTTP date,
and a server that is briefly not there (restarting). The far end is a real HTTP server on loopback
that answers as a proxy in front of faceforge would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from faceforge.cli.http_target import HttpTarget
from tests.api.fixtures import free_port
from tests.conftest import answer

TRAINING = {"state": "idle", "requested": 1, "built": 1, "current_version": 3}


class _Proxy(BaseHTTPRequestHandler):
    """The first GET is a 503 whose Retry-After is a date one second ahead; then faceforge's answer."""

    busy_answers = 1

    def do_GET(self) -> None:
        if _Proxy.busy_answers > 0:
            _Proxy.busy_answers -= 1
            retry = format_datetime(datetime.now(UTC) + timedelta(seconds=1), usegmt=True)
            self.send_response(503)
            self.send_header("Retry-After", retry)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer(self, 200, json.dumps(TRAINING).encode(), "application/json")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _proxy(port: int, *, after: float = 0.0) -> Iterator[None]:
    """The proxy on ``port``, listening only ``after`` seconds from now."""
    servers: list[ThreadingHTTPServer] = []

    def run() -> None:
        time.sleep(after)
        server = ThreadingHTTPServer(("127.0.0.1", port), _Proxy)
        servers.append(server)
        server.serve_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        while not servers and thread.is_alive():
            time.sleep(0.05)
        for server in servers:
            server.shutdown()
            server.server_close()


def test_retry_after_as_an_http_date_is_waited_for() -> None:
    port = free_port()
    _Proxy.busy_answers = 1
    with _proxy(port):
        target = HttpTarget(f"http://127.0.0.1:{port}", None)
        try:
            assert target.current_version() == 3
        finally:
            target.close()
    assert _Proxy.busy_answers == 0


def test_a_server_briefly_away_is_waited_for() -> None:
    port = free_port()
    _Proxy.busy_answers = 0
    with _proxy(port, after=1.5):  # refused connections first, as while a server restarts
        target = HttpTarget(f"http://127.0.0.1:{port}", None)
        try:
            assert target.current_version() == 3
        finally:
            target.close()


def test_retry_after_values() -> None:
    from faceforge.cli.http_target import retry_after_seconds  # here: it came with the fix

    now = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now=now) == 7.0
    assert retry_after_seconds("Wed, 02 Dec 2026 08:00:05 GMT", now=now) == 5.0
    assert retry_after_seconds("Wed, 02 Dec 2026 07:59:00 GMT", now=now) == 0.0  # already past
    assert retry_after_seconds("Thu, 03 Dec 2026 08:00:00 GMT", now=now) == 60.0  # not a day
    for unreadable in (None, "", "soon", "-3", "1.5e9"):
        assert retry_after_seconds(unreadable, now=now) == 1.0
