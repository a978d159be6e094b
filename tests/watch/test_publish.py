"""The agent's MQTT publisher says when no broker answers, once, whatever the way it fails, and keeps
sending when its spool cannot be written."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import pytest

from faceforge.edge.models import Person
from faceforge.edge.publish import ANSWER_SECONDS, Decision, Publisher, last_seen_topic, parse_broker_url
from tests.api.fixtures import wait_for
from tests.watch.conftest import (
    Subscriber,
    clear_retained,
    publish_retained,
    retained_on_broker,
    unique,
)

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


def test_a_spool_that_cannot_be_written_loses_nothing_it_can_send(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full or read-only disk: the spool's write raised out of ``publish`` (a traceback ended the
    agent) and out of paho's ``on_publish``, which ended its network loop: nothing was sent again.
    The decisions stay in memory and go out; the failure is said once, and so is its end."""
    camera = unique("cellar")
    folder = tmp_path / "cache"
    folder.mkdir()
    spool = folder / "unsent.jsonl"
    publisher = Publisher(parse_broker_url("mqtt://127.0.0.1:1883"), camera, spool)
    with (
        Subscriber([publisher.decision_topic]) as seen,
        caplog.at_level(logging.INFO, logger="faceforge.edge.publish"),
    ):
        publisher.publish(decision(camera, 1))  # written, then queued by paho until it connects
        assert spool.is_file()
        folder.rename(tmp_path / "moved")
        folder.write_bytes(b"")  # a file where the folder was: every write fails (ENOTDIR), as root too
        publisher.start()  # acknowledged in paho's thread: the spool is written then
        try:
            publisher.publish(decision(camera, 2))
            assert publisher.drain(10), "paho's loop stopped"
            folder.unlink()
            folder.mkdir()  # the disk works again
            publisher.publish(decision(camera, 3))
            assert publisher.drain(10)
            # (paho sent the one queued before it connected twice: QoS 1 is "at least once")
            wait_for(lambda: len(received(seen, publisher)) == 3, timeout=10, what="the decisions")
        finally:
            publisher.stop()
            clear_retained([publisher.status_topic])
    assert received(seen, publisher) == {0.1, 0.2, 0.3}
    assert spool.read_text() == ""  # every decision acknowledged
    said = [r.getMessage() for r in caplog.records if "unsent decisions" in r.getMessage()]
    assert len(said) == 2 and said[0].startswith("cannot write") and "again" in said[1], said


def decision(camera: str, number: int) -> Decision:
    return Decision(camera, None, None, number / 10, [0.0, 0.0, 1.0, 1.0], "2025-01-01T00:00:00.000Z", 1)


def received(seen: Subscriber, publisher: Publisher) -> set[float]:
    return {d["probability"] for d in seen.payloads(publisher.decision_topic)}


def test_people_left_out_of_a_new_model_leave_home_assistant(tmp_path: Path) -> None:
    """Everyone deleted, or one person: their retained discovery config and last-seen stayed on the
    broker, so Home Assistant kept a "last seen" sensor of a deleted person for ever (and a person
    enrolled again had two)."""
    prefix = unique("ffpeople")
    publisher = Publisher(
        parse_broker_url("mqtt://127.0.0.1:1883"),
        "door",
        tmp_path / "spool.jsonl",
        discovery_prefix=f"{prefix}-ha",
        topic_prefix=prefix,
    )
    ada, bob = Person(7, "Ada", "Ada (7)"), Person(8, "Bob", "Bob (8)")
    topics = [f"{prefix}/#", f"{prefix}-ha/#"]

    def retained_now(count: int, what: str) -> dict[str, bytes]:
        """What a new subscriber is given once ``count`` retained messages are left."""
        found: dict[str, bytes] = {}

        def settled() -> bool:
            nonlocal found
            found = retained_on_broker(topics)
            return len(found) == count

        wait_for(settled, timeout=10, what=what)
        return found

    publisher.set_people([ada, bob])
    publisher.start()
    seen: dict[str, bytes] = {}
    try:
        assert publisher.connected.wait(10)
        publisher.publish(
            Decision("door", "Bob", 8, 0.9, [0.0, 0.0, 1.0, 1.0], "2025-01-01T00:00:00.000Z", 1)
        )
        assert publisher.drain(10)
        seen = retained_now(5, "status, 3 configs, Bob's last seen")
        publisher.set_people([ada])  # a version without Bob
        # A track that began under the old version is decided with it, after the swap: Bob once more.
        publisher.publish(
            Decision("door", "Bob", 8, 0.8, [0.0, 0.0, 1.0, 1.0], "2025-01-01T00:00:01.000Z", 1)
        )
        assert publisher.drain(10)
        kept = retained_now(3, "Bob's messages cleared")
        assert not [topic for topic in kept if "person_8" in topic or "/people/8/" in topic], kept
        assert [topic for topic in kept if "person_7" in topic]  # Ada's sensor stays
        publisher.set_people([])  # the server has no version: nobody left
        retained_now(2, "Ada's config cleared")
    finally:
        publisher.stop()
        clear_retained([publisher.status_topic, *seen])


def sighting(person: Person, time: str, camera: str = "door") -> Decision:
    return Decision(camera, person.name, person.id, 0.9, [0.0, 0.0, 1.0, 1.0], time, 1)


def test_last_seen_is_the_newest_sighting_and_replayed_decisions_update_it(tmp_path: Path) -> None:
    """Decisions replayed from the spool at the agent's next start were published without their
    person's last-seen message, so Home Assistant never learned of those sightings; and a last-seen
    message sent late (replayed, or queued through an outage) would replace another camera's newer
    one. Now the retained ones are read first, and only a newer sighting replaces them."""
    prefix = unique("ffseen")
    ada, bob = Person(7, "Ada", "Ada (7)"), Person(8, "Bob", "Bob (8)")
    ada_topic, bob_topic = last_seen_topic(prefix, ada.id), last_seen_topic(prefix, bob.id)
    spool = tmp_path / "spool.jsonl"  # what an agent stopped while its broker was away left
    spool.write_text("".join(f"{sighting(p, '2025-01-01T10:00:00.000Z').to_json()}\n" for p in (ada, bob)))
    garden = {"time": "2025-01-01T11:00:00+00:00", "camera": "garden", "probability": 0.8}
    publish_retained({bob_topic: json.dumps(garden).encode()})  # another camera saw Bob since
    # What any client may leave there: an exception in paho's thread would end it for good.
    publish_retained(
        {
            f"{prefix}/people/²/last_seen": json.dumps(garden).encode(),
            last_seen_topic(prefix, 9): json.dumps(garden).encode("utf-16"),
        }
    )

    publisher = Publisher(
        parse_broker_url("mqtt://127.0.0.1:1883"),
        "door",
        spool,
        discovery_prefix=f"{prefix}-ha",
        topic_prefix=prefix,
    )
    publisher.set_people([ada, bob])
    try:
        with Subscriber([ada_topic, bob_topic]) as seen:
            publisher.start()
            assert publisher.drain(10)
            wait_for(lambda: seen.payloads(ada_topic), timeout=10, what="Ada's replayed sighting")
            assert seen.payloads(ada_topic) == [
                {"time": "2025-01-01T10:00:00.000Z", "camera": "door", "probability": 0.9}
            ]
            publisher.publish(sighting(ada, "2025-01-01T09:59:00.000Z"))  # a track decided late
            publisher.publish(sighting(bob, "2025-01-01T12:00:00.000Z"))
            assert publisher.drain(10)
            wait_for(lambda: len(seen.payloads(bob_topic)) == 2, timeout=10, what="Bob's new sighting")
            assert [m["time"] for m in seen.payloads(bob_topic)] == [
                garden["time"],
                "2025-01-01T12:00:00.000Z",
            ]
            assert len(seen.payloads(ada_topic)) == 1  # the older one was not sent
            # An older sighting reaches the broker anyway (another agent's replay, or one paho sent
            # again after reconnecting): the agent puts the newest back.
            publish_retained({bob_topic: json.dumps(garden).encode()})
            wait_for(lambda: len(seen.payloads(bob_topic)) == 4, timeout=10, what="Bob's newest again")
            assert seen.payloads(bob_topic)[-1]["time"] == "2025-01-01T12:00:00.000Z"
        assert spool.read_text() == ""  # both replayed decisions acknowledged
        retained = {t: json.loads(m)["time"] for t, m in retained_on_broker([ada_topic, bob_topic]).items()}
        assert retained == {ada_topic: "2025-01-01T10:00:00.000Z", bob_topic: "2025-01-01T12:00:00.000Z"}
    finally:
        publisher.stop()
        clear_retained(list(retained_on_broker([f"{prefix}/#", f"{prefix}-ha/#"])))
