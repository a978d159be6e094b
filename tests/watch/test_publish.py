"""The agent's MQTT publisher says when no broker answers, once, whatever the way it fails."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from faceforge.edge.publish import ANSWER_SECONDS, Publisher, parse_broker_url

UNANSWERED = "cannot reach the MQTT broker"


def test_a_port_that_takes_the_connection_and_never_answers_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another service on the port, or a mistyped one: the connection is taken, MQTT never answers,
    and paho would only give up with the keepalive (a tester waited 31 s for the warning)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        publisher = Publisher(parse_broker_url(f"mqtt://127.0.0.1:{port}"), "hall", tmp_path / "spool.jsonl")
        with caplog.at_level(logging.WARNING, logger="faceforge.edge.publish"):
            publisher.start()
            try:
                deadline = time.monotonic() + ANSWER_SECONDS + 5
                while UNANSWERED not in caplog.text and time.monotonic() < deadline:
                    time.sleep(0.1)
            finally:
                publisher.stop()
    assert caplog.text.count(f"{UNANSWERED} 127.0.0.1:{port}") == 1, caplog.text
