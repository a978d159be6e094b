"""Each person's ``last_seen`` on the broker: the newest sighting by any camera, whatever arrives late.

A camera agent's sighting can reach the broker after a newer one by another camera: decisions the
spool replays at the next start, messages paho queued through an outage and sends again when it
reconnects, two agents publishing at once. The retained message is what Home Assistant shows, so an
older sighting must not stay in place of a newer one. Every agent keeps, per person, the newest
sighting it knows (its own or heard) and the last one it heard on the broker (the broker sends a
topic's messages in the order it took them, so that is what the broker holds), and

- reads the retained messages of a new connection before it sends its own (they are held meanwhile,
  the newest per person; ``read``), then sends a sighting only when it is newer than the newest it
  knows (``sighting``);
- corrects the broker when the last message heard there is older than the newest it knows (heard
  while connected, ``heard``, or during the read, ``read``): it sends the newest again, once until
  its own latest message comes back, so corrections stay one per agent per late message. Equal times
  change nothing, so agents settle on the newest.

A time more than ``CLOCK_SKEW`` ahead of this machine's clock is not believed, and said once per
person: a camera whose clock runs fast believes its own, and its sightings win until this machine's
clock reaches them (countering them would bounce the message between the two agents); this agent's
own, dated before its clock was set back, are not put back either. A connection's
retained messages are read afresh (a broker may have restarted without them): once the read is
complete, a person the broker holds nothing for gets the newest sighting known again, unless the
broker cleared them (left out of the model).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(minutes=5)
CLEARED = datetime.max.replace(tzinfo=UTC)  # on the broker: nothing, on purpose (nothing to correct)

# ``send(person_id, message, correction)``: publish ``message`` (a ``last_seen`` JSON) for the person;
# ``correction``: a sighting sent before, put back (the sender may skip people it no longer names).
# Returns whether it was published. Called under the book's lock, so two threads' sightings reach
# the broker in the order they were compared.
Send = Callable[[int, str, bool], bool]


def parse_time(text: str) -> datetime:
    """A decision's ISO 8601 time (``ValueError`` if it is not one, or has no zone)."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"no time zone in {text!r}")
    return when


class LastSeenBook:
    """What one agent knows of every person's ``last_seen`` (module docstring); thread-safe."""

    def __init__(self, send: Send, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._send = send
        self._now = now
        self._lock = threading.Lock()
        self._newest: dict[int, tuple[datetime, str]] = {}  # person -> newest known (time, message)
        self._on_broker: dict[int, datetime] = {}  # person -> the last time heard on the broker
        self._pending: dict[int, datetime] = {}  # person -> the time we sent last, until it comes back
        self._held: dict[int, tuple[datetime, str]] = {}  # ours, until the broker's are read
        self._ahead_said: set[int] = set()
        self._read = False
        self._session = 0

    @property
    def held(self) -> int:
        """How many people's sightings wait for the broker's to be read (read without the lock: a
        caller holding its own lock may ask while a send holds this one). Each leaves only once
        sent, so a drain that sees none waits for nothing unsent."""
        return len(self._held)

    def session_started(self) -> int:
        """A new connection: its retained messages are still to be read. Returns its number."""
        with self._lock:
            self._session += 1
            self._read = False
            self._on_broker.clear()  # read afresh: the broker may have restarted without them
            return self._session

    def session_lost(self) -> None:
        """The connection is gone: sightings wait for the next one's retained messages, and what was
        sent may never come back."""
        with self._lock:
            self._session += 1
            self._read = False
            self._pending.clear()

    def read(self, session: int | None = None, *, complete: bool = True) -> None:
        """The broker's retained messages are in (``complete``), or will not come: send what was held
        that is newer than them, and correct what the broker holds older, or (complete) nothing for.
        With ``session``, only if that connection is still the current one and unread (a late
        fallback of an earlier connection)."""
        with self._lock:
            if session is not None and (session != self._session or self._read):
                return
            self._read = True
            for person_id, (when, message) in list(self._held.items()):
                self._offer(person_id, when, message)
                del self._held[person_id]
            for person_id in list(self._newest if complete else self._on_broker):
                self._correct(person_id)

    def sighting(self, person_id: int, when: datetime, message: str) -> None:
        """Ours: sent now if the broker's are read and it is the newest, else held."""
        with self._lock:
            if not self._read:
                held = self._held.get(person_id)
                if held is None or when > held[0] or self._ahead(held[0]):
                    self._held[person_id] = (when, message)
                return
            self._offer(person_id, when, message)

    def heard(self, person_id: int, when: datetime, message: str) -> None:
        """A ``last_seen`` message the broker sent us (retained, or as it was published)."""
        with self._lock:
            if self._pending.get(person_id) == when:
                del self._pending[person_id]  # ours came back (even dated ahead of this clock)
            if self._ahead(when):
                self._on_broker[person_id] = when  # not countered: that would bounce between agents
                if person_id not in self._ahead_said:
                    self._ahead_said.add(person_id)
                    log.warning(
                        "person %d's last_seen is dated %s, more than %s ahead of this machine's clock: "
                        "a camera's clock runs fast (its sightings win until then)",
                        person_id,
                        when.isoformat(),
                        CLOCK_SKEW,
                    )
                return
            self._on_broker[person_id] = when
            newest = self._newest.get(person_id)
            if newest is None or when > newest[0] or self._ahead(newest[0]):
                self._newest[person_id] = (when, message)
            elif self._read:
                self._correct(person_id)

    def subscribed_again(self) -> None:
        """The agent subscribes again on a connection where it was not: what it sent meanwhile cannot
        have come back, and must not hold back corrections."""
        with self._lock:
            self._pending.clear()

    def cleared(self, person_id: int) -> None:
        """The broker's message for the person was deleted (they left the model): not to be put back."""
        with self._lock:
            self._on_broker[person_id] = CLEARED

    def _ahead(self, when: datetime) -> bool:
        """Dated beyond this clock's skew: another camera's fast clock, or ours before it was set back;
        neither holds back what this clock says now."""
        return when > self._now() + CLOCK_SKEW

    def _offer(self, person_id: int, when: datetime, message: str) -> None:
        newest = self._newest.get(person_id)
        if newest is not None and newest[0] >= when and not self._ahead(newest[0]):
            return  # seen since, by another camera or by us (not: dated before our clock was set back)
        self._newest[person_id] = (when, message)
        if self._send(person_id, message, False):
            self._pending[person_id] = when

    def _correct(self, person_id: int) -> None:
        newest, on_broker = self._newest.get(person_id), self._on_broker.get(person_id)
        if newest is None or (on_broker is not None and on_broker >= newest[0]) or person_id in self._pending:
            return  # nothing known, the broker holds as new (or was cleared), or ours is on its way
        if self._ahead(newest[0]):
            return  # ours, dated before this clock was set back: not put back over the others'
        if self._send(person_id, newest[1], True):  # an older one replaced it: put the newest back
            self._pending[person_id] = newest[0]
