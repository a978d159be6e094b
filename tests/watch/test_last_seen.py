"""The book of each person's newest sighting (``edge.last_seen``), without a broker: what is held, what
is sent, and what puts the newest back. The broker's side is tests/watch/test_publish.py's."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from faceforge.edge.last_seen import CLOCK_SKEW, LastSeenBook

NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def book() -> tuple[LastSeenBook, list[tuple[int, str]]]:
    sent: list[tuple[int, str]] = []

    def send(person: int, message: str, correction: bool) -> bool:
        sent.append((person, message))
        return True

    return LastSeenBook(send, now=lambda: NOW), sent


def test_sightings_wait_for_the_brokers_and_only_the_newest_goes() -> None:
    seen, sent = book()
    session = seen.session_started()
    seen.sighting(1, at(-30), "ada -30")
    seen.sighting(1, at(-40), "ada -40")  # replayed out of order: the newest is kept
    seen.sighting(2, at(-30), "bob -30")
    assert sent == [] and seen.held == 2
    seen.heard(2, at(-10), "bob -10 from the garden")  # the broker's retained one
    seen.session_lost()
    seen.read(session)  # the fallback of a connection that is gone: nothing is sent
    assert sent == [] and seen.held == 2
    session = seen.session_started()
    seen.heard(2, at(-10), "bob -10 from the garden")  # retained: handed over again
    seen.read(session)
    assert sent == [(1, "ada -30")] and seen.held == 0  # Bob's was older than the garden's
    seen.sighting(1, at(-35), "ada -35")  # a track decided late
    seen.sighting(2, at(-5), "bob -5")
    assert sent == [(1, "ada -30"), (2, "bob -5")]


def test_an_older_message_on_the_broker_is_answered_with_the_newest_and_equal_ones_settle() -> None:
    seen, sent = book()
    seen.read(seen.session_started())
    seen.sighting(1, at(-5), "ada -5")
    seen.heard(1, at(-5), "ada -5")  # our own, back from the broker
    seen.heard(1, at(-60), "ada -60 from a replay")
    assert sent == [(1, "ada -5"), (1, "ada -5")]
    seen.heard(1, at(-5), "ada -5")  # what we put back: nothing more
    assert len(sent) == 2


def test_a_time_from_a_clock_running_fast_is_not_believed() -> None:
    seen, sent = book()
    seen.read(seen.session_started())
    seen.heard(1, NOW + CLOCK_SKEW + timedelta(minutes=1), "ada from a camera an hour ahead")
    seen.sighting(1, at(-1), "ada -1")
    assert sent == [(1, "ada -1")]


def test_an_older_one_heard_before_the_read_ends_is_corrected_then() -> None:
    """paho sends its queued messages again when it reconnects, before the read ends: ours, older
    than what another camera sent meanwhile, replaced it on the broker."""
    seen, sent = book()
    session = seen.session_started()
    seen.heard(1, at(-10), "ada -10 from the garden")  # the broker's retained one
    seen.heard(1, at(-30), "ada -30, ours, sent again by paho")
    assert sent == []
    seen.read(session)
    assert sent == [(1, "ada -10 from the garden")]


def test_no_correction_while_our_newer_one_is_on_its_way() -> None:
    """Corrections answered every older echo, one per agent each time: with cameras in step, more
    messages each round."""
    seen, sent = book()
    seen.read(seen.session_started())
    seen.sighting(1, at(-10), "ada -10")
    seen.sighting(1, at(-5), "ada -5")
    seen.heard(1, at(-10), "ada -10")  # the first one's echo: the second is on its way
    seen.heard(1, at(-5), "ada -5")
    assert sent == [(1, "ada -10"), (1, "ada -5")]
    seen.session_lost()  # a message in flight may never come back: corrections resume
    seen.read(seen.session_started())
    seen.heard(1, at(-10), "ada -10 again")
    assert sent[-1] == (1, "ada -5") and len(sent) == 3


def test_a_connection_reads_afresh_and_a_broker_that_lost_its_messages_gets_the_newest_again() -> None:
    """A broker restarted without its retained messages (Mosquitto keeps none by default): what an
    earlier connection heard there made the book believe it still held them."""
    seen, sent = book()
    seen.read(seen.session_started())
    seen.sighting(1, at(-5), "ada -5")
    seen.heard(1, at(-5), "ada -5")
    seen.heard(2, at(-9), "bob -9 from the garden")
    seen.cleared(2)  # Bob left the model: nothing to put back while the broker holds nothing for him
    seen.heard(1, at(-60), "ada -60 from a replay")
    seen.heard(2, at(-60), "bob -60 from a replay")  # the replay named him: his newest goes back
    assert sent == [(1, "ada -5"), (1, "ada -5"), (2, "bob -9 from the garden")]
    seen.heard(1, at(-5), "ada -5")
    seen.heard(2, at(-9), "bob -9 from the garden")
    seen.session_lost()
    seen.read(seen.session_started(), complete=False)  # not read (refused, or no answer): no guess
    assert len(sent) == 3
    seen.session_lost()
    seen.read(seen.session_started())  # read, and nothing retained came
    # (the publisher sends no correction for someone the model left out)
    assert sent[3:] == [(1, "ada -5"), (2, "bob -9 from the garden")]


def test_a_sighting_dated_ahead_of_this_clock_is_said_and_ours_coming_back_clears_the_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen, sent = book()
    seen.read(seen.session_started())
    ahead = NOW + CLOCK_SKEW + timedelta(minutes=1)
    seen.sighting(1, ahead, "ada, from this machine before its clock was set back")
    with caplog.at_level(logging.WARNING, logger="faceforge.edge.last_seen"):
        seen.heard(1, ahead, "ada, ...")
        seen.heard(1, ahead, "ada, ...")
    assert caplog.text.count("ahead of this machine's clock") == 1
    seen.heard(1, at(-60), "ada -60 from a replay")
    assert len(sent) == 1  # not put back over the others' either
    seen.sighting(1, at(-1), "ada -1")
    assert sent[1:] == [(1, "ada -1")]  # ours, ahead, does not hold back what this clock says now

    # Another camera's, ahead: not countered after a reconnect (that would bounce between them).
    other, sent = book()
    other.read(other.session_started())
    other.sighting(2, at(-1), "bob -1")
    other.heard(2, ahead, "bob, from a camera whose clock runs fast")
    other.session_lost()
    session = other.session_started()
    other.heard(2, ahead, "bob, from a camera whose clock runs fast")
    other.read(session)
    assert sent == [(2, "bob -1")]


def test_what_was_sent_unsubscribed_does_not_hold_back_corrections_once_subscribed_again() -> None:
    seen, sent = book()
    seen.read(seen.session_started(), complete=False)  # the broker refused the subscription
    seen.sighting(1, at(-1), "ada -1")  # sent, and never heard back
    seen.subscribed_again()  # asked again on the same connection: it now lets us read
    seen.heard(1, at(-3), "ada -3, ours, sent again by paho after a reconnect")
    assert sent == [(1, "ada -1"), (1, "ada -1")]


def test_a_sighting_dated_before_the_clock_was_set_back_gives_way() -> None:
    ahead = NOW + CLOCK_SKEW + timedelta(hours=1)
    seen, sent = book()
    seen.session_started()
    seen.sighting(1, ahead, "ada, held from before the clock was set back")
    seen.sighting(1, at(1), "ada +1")
    seen.read(seen.session_started())
    assert sent == [(1, "ada +1")]
    seen.sighting(2, ahead, "bob, before the clock was set back")
    seen.heard(2, ahead, "bob, before the clock was set back")  # ours, back
    seen.heard(2, at(2), "bob +2 from the garden")  # learnt, though ours is dated later
    seen.heard(2, at(-30), "bob -30 from a replay")
    assert sent[-1] == (2, "bob +2 from the garden")
