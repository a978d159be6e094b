"""Decisions to MQTT (paho-mqtt 2), with Home Assistant discovery, and nothing lost to an outage.

Topics (``<camera>`` as given to ``--camera``):

- ``faceforge/<camera>/person``: one JSON message per decision, QoS 1, not retained:
  ``{"camera", "name", "person_id", "probability", "box", "time", "version"}`` (``name`` and
  ``person_id`` null for a stranger; ``box`` ``[x, y, width, height]`` in frame pixels; ``time`` ISO
  8601 UTC; ``version`` the model version that decided).
- ``faceforge/people/<person_id>/last_seen``: retained ``{"time", "camera", "probability"}``, the
  newest sighting by any camera, whatever reaches the broker late (``edge.last_seen``); decisions
  replayed from the spool update it as live ones do.
- ``faceforge/<camera>/status``: retained ``online``, and ``offline`` as the connection's will.
- ``<discovery prefix>/sensor/faceforge/<object_id>/config`` (default prefix ``homeassistant``):
  retained Home Assistant MQTT discovery configs, sent at every connection: per camera a sensor
  whose state is the last person seen (``stranger`` for a stranger; the decision as attributes),
  per person of the model a ``timestamp`` sensor of when they were last seen (camera as attribute).

**No decision is lost that can still be sent.** paho keeps QoS 1 messages published while the
broker is away and sends them when it reconnects (with back-off, 1 s to 60 s). Beside that, each
decision is written to a spool file before it is published and removed once the broker acknowledged
it, so decisions still unsent when the agent stops are published at its next start. The spool holds
at most ``SPOOL_LIMIT`` decisions (the oldest are dropped beyond that, with a warning).
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from faceforge.core.atomic import write_bytes_atomically
from faceforge.edge.errors import WatchError
from faceforge.edge.last_seen import LastSeenBook, parse_time
from faceforge.edge.models import Person

log = logging.getLogger(__name__)

# Every topic starts with the agent's prefix (``--topic-prefix``), which also names its Home Assistant
# node: two faceforge servers on one broker must not share ``<prefix>/people/<id>/last_seen`` (ids
# start at 1 on every server), nor their entities' unique ids.
BASE_TOPIC = "faceforge"
DISCOVERY_PREFIX = "homeassistant"
SPOOL_LIMIT = 10_000
RECONNECT_SECONDS = (1, 60)
KEEPALIVE_SECONDS = 30
# A port that takes the connection but never answers MQTT (another service, a mistyped port) would
# only time out with the keepalive: said after this long without a broker's answer.
ANSWER_SECONDS = 5.0
STRANGER_STATE = "stranger"
EARLY_ACK_SECONDS = 60.0  # message ids repeat only after 65,535 messages
READ_RETRY_SECONDS = 600.0  # a broker that would not let us read last-seen messages is asked again


@dataclass(frozen=True, slots=True)
class Decision:
    camera: str
    name: str | None
    person_id: int | None
    probability: float
    box: list[float]
    time: str
    version: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def _without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` masked: what an error may say (a service's
    journal keeps it), as the database URL's is."""
    return re.sub(r"(//[^/@:]*:).*@", r"\1***@", url)  # to the last @: a password may hold / and @


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` (1883) or ``mqtts://...`` (TLS, 8883)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "mqtt://[": what it says would be the URL itself, password and all
        raise WatchError(f"--mqtt must look like mqtt://host:port, not {_without_password(url)!r}") from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise WatchError(f"--mqtt must look like mqtt://host:port, not {_without_password(url)!r}")
    try:
        port = parts.port
    except ValueError:
        raise WatchError(f"--mqtt has an invalid port: {_without_password(url)!r}") from None
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def slug(text: str) -> str:
    """``text`` as an MQTT topic level and Home Assistant object id: letters, digits, ``_``, ``-``."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return cleaned or "camera"


class Spool:
    """Decisions not yet acknowledged by the broker, one JSON line each, rewritten atomically.

    A spool that cannot be written (a full or read-only disk) is said once, and again when it can
    be: the decisions stay in memory meanwhile (paho sends them as usual), so only an agent stopped
    while it could not write loses its unsent ones. A write failure is never raised: ``done`` runs in
    paho's network thread, whose loop an exception ends for good (nothing more is sent)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: dict[int, str] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._unwritable = False

    def load(self) -> list[tuple[int, str]]:
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    self.add(line)
        return list(self._pending.items())

    def add(self, payload: str) -> int:
        with self._lock:
            key, self._next = self._next, self._next + 1
            self._pending[key] = payload
            while len(self._pending) > SPOOL_LIMIT:
                dropped = next(iter(self._pending))
                del self._pending[dropped]
                log.warning("the spool is full (%d decisions): dropped the oldest", SPOOL_LIMIT)
            self._write()
            return key

    def done(self, key: int) -> None:
        with self._lock:
            if self._pending.pop(key, None) is not None:
                self._write()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def written(self) -> bool:
        """Whether the file holds the pending decisions (its last write worked)."""
        return not self._unwritable

    def _write(self) -> None:
        lines = "".join(f"{payload}\n" for payload in self._pending.values())
        try:
            write_bytes_atomically(self.path, lines.encode())
        except OSError as error:
            if not self._unwritable:
                log.warning(
                    "cannot write the unsent decisions to %s (%s): keeping them in memory", self.path, error
                )
            self._unwritable = True
            return
        if self._unwritable:
            log.info("the unsent decisions are written to %s again", self.path)
        self._unwritable = False


class Publisher:
    """One paho client per agent: discovery at each connection, decisions with QoS 1 and the spool."""

    def __init__(
        self,
        broker: BrokerAddress,
        camera: str,
        spool: Path,
        *,
        discovery_prefix: str = DISCOVERY_PREFIX,
        topic_prefix: str = BASE_TOPIC,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.camera = camera
        self.topic_camera = slug(camera)
        self.discovery_prefix = discovery_prefix.rstrip("/")
        self.topic_prefix = topic_prefix.strip("/")
        self.node_id = slug(self.topic_prefix)
        self.spool = Spool(spool)
        self._people: list[Person] = []
        self._gone: set[int] = set()  # people left out of the model, whose retained messages go
        self._lock = threading.Lock()
        # paho message id -> spool key of a decision, or None for a last-seen message
        self._in_flight: dict[int, int | None] = {}
        self._early_acks: dict[int, float] = {}  # message id -> when acknowledged
        self._last_seen = LastSeenBook(self._publish_last_seen)
        # Reading the retained last-seen messages: a broker may refuse the subscription (said, and ours
        # are sent unread), or drop the connection for it (some do, on every connection: after two
        # in a row, the agent stops asking). Either way it asks again after READ_RETRY_SECONDS: an
        # access list changes, and two drops may have been a flapping link.
        self._not_reading_until = 0.0
        self._session = 0  # the book's number of the current connection
        self._asked = False  # this connection subscribed to them
        self._subscribed = False  # ...and the broker answered
        self._dropped_before_subscribed = 0
        self._acked = threading.Condition()
        self.connected = threading.Event()
        self._stopping = False
        self._unreachable_said = False  # once per outage: paho retries every 1 to 60 s
        self._answer_wait = threading.Timer(ANSWER_SECONDS, self._check_answered)
        self._answer_wait.daemon = True
        client_id = f"{self.node_id}-watch-{self.topic_camera}-{os.getpid()}"
        # Its own topic, never retained: the broker sends a subscription's retained messages before
        # one published after the subscription, so ours arriving there says the last-seen ones are in.
        self._read_mark = f"{self.topic_prefix}/agents/{client_id}/seen-read"
        self._client = mqtt.Client(
            # The process id too: two agents with one client id knock each other off the broker, in
            # turns, for ever (sessions are clean: the spool, not the broker, keeps what is unsent).
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
        )
        if broker.username:
            self._client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self._client.tls_set_context(ssl.create_default_context())
        self._client.will_set(self.status_topic, "offline", qos=1, retain=True)
        self._client.reconnect_delay_set(*RECONNECT_SECONDS)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._broker = broker

    @property
    def decision_topic(self) -> str:
        return f"{self.topic_prefix}/{self.topic_camera}/person"

    @property
    def status_topic(self) -> str:
        return f"{self.topic_prefix}/{self.topic_camera}/status"

    def last_seen_topic(self, person_id: int) -> str:
        return last_seen_topic(self.topic_prefix, person_id)

    def start(self) -> None:
        """Connect in the background (and keep reconnecting); spooled decisions are queued first."""
        for key, payload in self.spool.load():
            self._send(key, payload)
            self._sighting(payload)
        self._client.connect_async(self._broker.host, self._broker.port, keepalive=KEEPALIVE_SECONDS)
        self._client.loop_start()
        self._answer_wait.start()

    def set_people(self, people: list[Person]) -> None:
        """The model's people (a new version may add some, or leave some out): their discovery configs
        go out now, and the retained messages of people no longer in it are cleared: their sensors
        stayed in Home Assistant for ever, and a person enrolled again got a second one."""
        with self._lock:
            kept = {person.id for person in people}
            self._gone |= {person.id for person in self._people if person.id not in kept}
            self._gone -= kept
            self._people = list(people)
        if self.connected.is_set():
            self._announce()

    def publish(self, decision: Decision) -> None:
        payload = decision.to_json()
        self._send(self.spool.add(payload), payload)
        self._sighting(payload)

    def _sighting(self, decision: str) -> None:
        """The last-seen message of ``decision`` (a decision's JSON) to the book, which sends it."""
        try:
            fields = json.loads(decision)
            person_id, time_text = fields["person_id"], fields["time"]
            if person_id is None:
                return
            when = parse_time(time_text)
            seen = {"time": time_text, "camera": fields["camera"], "probability": fields["probability"]}
        except (ValueError, KeyError, TypeError):  # a spool line another version wrote differently
            return
        self._last_seen.sighting(person_id, when, json.dumps(seen))

    def _publish_last_seen(self, person_id: int, message: str, correction: bool) -> bool:
        with self._lock:
            # Retained only for someone the model still has: a track decided with the version just
            # replaced named a person it left out, whose cleared last_seen came back for ever.
            kept = any(person.id == person_id for person in self._people)
        if correction and not kept:
            return False  # their retained message was cleared on purpose
        info = self._client.publish(self.last_seen_topic(person_id), message, qos=1, retain=kept)
        self._track(info.mid, None)
        return True

    def _send(self, key: int, payload: str) -> None:
        self._track(self._client.publish(self.decision_topic, payload, qos=1).mid, key)

    def _track(self, mid: int, key: int | None) -> None:
        """Wait for message ``mid``'s acknowledgement (a decision's spool key, or None). Not called
        under the condition's lock: paho calls on_publish holding its own message lock."""
        with self._acked:
            if self._early_acks.pop(mid, None) is not None:  # acknowledged before we got here
                if key is not None:
                    self.spool.done(key)
                self._acked.notify_all()
            else:
                self._in_flight[mid] = key

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every decision and last-seen message to be acknowledged;
        True if they were."""
        deadline = time.monotonic() + timeout
        with self._acked:
            return self._acked.wait_for(
                lambda: not self._in_flight and not self._last_seen.held,
                timeout=max(0.0, deadline - time.monotonic()),
            )

    def stop(self) -> None:
        self._stopping = True  # the disconnection that follows is ours, not a lost broker
        self._answer_wait.cancel()
        if self._last_seen.held:  # their decisions are in the spool, if unsent: replayed, they come back
            log.warning("%d people's last-seen messages not sent: no broker was read", self._last_seen.held)
        if self.connected.is_set():
            self._client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(2.0)
        self._client.disconnect()
        self._client.loop_stop()

    # paho's callbacks (its network thread)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:  # said once, as an unreachable broker (paho retries; disconnects us)
            if not self._unreachable_said:
                log.warning("the MQTT broker refused the connection: %s", reason)
            self._unreachable_said = True
            return
        log.info("connected to the MQTT broker %s:%d", self._broker.host, self._broker.port)
        self._unreachable_said = False
        self._session = session = self._last_seen.session_started()
        self._subscribed = False
        self._asked = self._reading
        if self._asked:
            self._subscribe_last_seen()
            # A broker whose access list drops our mark, or that never answers the subscription, would
            # hold our last-seen messages for ever: sent unread after this long.
            _later(ANSWER_SECONDS, self._retained_read, session=session)
        else:
            self._retained_read(complete=False)
            # Asked again on this connection when the pause ends (a connection may last months).
            _later(max(0.0, self._not_reading_until - time.monotonic()), self._ask_again, session=session)
        self.connected.set()
        self._announce()

    def _subscribe_last_seen(self) -> None:
        self._client.subscribe([(last_seen_topic(self.topic_prefix, "+"), 1), (self._read_mark, 1)])

    def _ask_again(self, session: int) -> None:
        """A broker that refused the subscription, asked again on the same connection (its access
        list may have changed): the retained messages then come, and the book corrects from them."""
        if session == self._session and self.connected.is_set() and not self._stopping:
            self._asked, self._subscribed = True, False
            self._last_seen.subscribed_again()
            self._subscribe_last_seen()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        self._subscribed = True
        self._dropped_before_subscribed = 0
        if any(reason.is_failure for reason in reasons):  # a broker's access list may refuse reading
            log.warning("the MQTT broker refused to let us read last-seen messages: sending ours unread")
            self._not_reading_until = time.monotonic() + READ_RETRY_SECONDS
            self._retained_read(complete=False)
            _later(READ_RETRY_SECONDS, self._ask_again, session=self._session)
            return
        # The broker hands a subscription's retained messages over before a message published after it
        # (Mosquitto does; a broker that does not is corrected by the book as it hears them).
        client.publish(self._read_mark, b"", qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        # Anything another client publishes reaches this: an exception would end paho's network thread
        # for good (no decision sent again), so none leaves here.
        try:
            self._heard(message.topic, message.payload)
        except Exception:
            log.exception("ignored an MQTT message on %s", message.topic)

    def _heard(self, topic: str, payload: bytes) -> None:
        if topic == self._read_mark:
            self._retained_read(complete=True)
            return
        person_id = _last_seen_person(self.topic_prefix, topic)
        if person_id is None:
            return
        if not payload:  # cleared: the person left the model
            self._last_seen.cleared(person_id)
            return
        try:
            text = payload.decode()
            when = parse_time(json.loads(text)["time"])
        except (ValueError, KeyError, TypeError):  # not a sighting
            return
        self._last_seen.heard(person_id, when, text)

    @property
    def _reading(self) -> bool:
        return time.monotonic() >= self._not_reading_until

    def _retained_read(self, session: int | None = None, *, complete: bool = False) -> None:
        self._last_seen.read(session, complete=complete)
        with self._acked:
            self._acked.notify_all()  # drain waits for the held ones

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._unreachable()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("lost the MQTT broker (%s); reconnecting", reason)
            self._unreachable_said = True  # the outage is said: its failed reconnections need not be
        elif not self.connected.is_set():
            self._unreachable()  # something answered on the port, but no MQTT broker accepted us
        if self.connected.is_set() and self._asked and not self._subscribed and not self._stopping:
            self._dropped_before_subscribed += 1
            if self._dropped_before_subscribed >= 2:
                log.warning("the MQTT broker drops us when we read last-seen messages: sending ours unread")
                self._not_reading_until = time.monotonic() + READ_RETRY_SECONDS
                self._dropped_before_subscribed = 0
        self._last_seen.session_lost()  # last-seen messages wait for the next connection's retained ones
        self.connected.clear()

    def _check_answered(self) -> None:
        if not self.connected.is_set():
            self._unreachable()

    def _unreachable(self) -> None:
        # Said when it happens, once until a broker accepts us (a mistyped --mqtt host was only
        # reported at exit, as unsent decisions).
        if not self._unreachable_said and not self._stopping:
            self._unreachable_said = True
            log.warning(
                "cannot reach the MQTT broker %s:%d; retrying, and decisions wait in %s until it answers",
                self._broker.host,
                self._broker.port,
                self.spool.path,
            )

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._acked:
            if mid in self._in_flight:
                key = self._in_flight.pop(mid)
                if key is not None:
                    self.spool.done(key)
            else:  # a discovery or status message, or one not registered yet (_track)
                now = time.monotonic()
                self._early_acks = {m: t for m, t in self._early_acks.items() if now - t < EARLY_ACK_SECONDS}
                self._early_acks[mid] = now
            self._acked.notify_all()

    def _announce(self) -> None:
        self._client.publish(self.status_topic, "online", qos=1, retain=True)
        with self._lock:
            people, gone = list(self._people), sorted(self._gone)
            self._gone.clear()
        for object_id, config in discovery_configs(self.camera, people, self.status_topic, self.topic_prefix):
            self._client.publish(self._config_topic(object_id), json.dumps(config), qos=1, retain=True)
        for person_id in gone:  # an empty retained message deletes the retained one (and the entity)
            self._client.publish(self._config_topic(person_object_id(person_id)), b"", qos=1, retain=True)
            self._client.publish(self.last_seen_topic(person_id), b"", qos=1, retain=True)

    def _config_topic(self, object_id: str) -> str:
        return f"{self.discovery_prefix}/sensor/{self.node_id}/{object_id}/config"


def check_topic_prefix(prefix: str) -> None:
    """A ``WatchError`` for a ``--topic-prefix`` that is not one topic level: empty, an MQTT wildcard
    (which the broker refuses in a published topic), or two levels (``a/b`` took the spool file and
    Home Assistant ids of ``a_b``, and sent its decisions there)."""
    level = prefix.strip("/")
    if not level or "/" in level or any(c in prefix for c in "+#") or any(c.isspace() for c in prefix):
        raise WatchError(f"--topic-prefix must be a topic level such as 'faceforge', not {prefix!r}")


def check_discovery_prefix(prefix: str) -> None:
    """A ``WatchError`` for a ``--discovery-prefix`` no topic can start with: a wildcard in a published
    topic ended paho's network thread (a traceback, nothing more sent) and the agent still exited 0;
    an empty one published Home Assistant's configs under ``/sensor/...``."""
    if not prefix.strip("/") or any(c in prefix for c in "+#") or any(c.isspace() for c in prefix):
        raise WatchError(
            "--discovery-prefix must be Home Assistant's discovery topic, such as 'homeassistant', "
            f"not {prefix!r}"
        )


def check_camera_name(camera: str) -> None:
    """A ``WatchError`` for a ``--camera`` that would not name one camera: blank, without a letter or
    digit, or with an MQTT level separator or wildcard (``a/b`` and ``a+b`` became the same topic level
    and Home Assistant id, ``a_b``, so two cameras overwrote each other)."""
    if not camera.strip() or slug(camera) == "camera" != camera or any(c in camera for c in "/+#"):
        raise WatchError(
            "--camera must name the camera with at least one ASCII letter or digit (it becomes the MQTT "
            f"topic level and the Home Assistant id), and no '/', '+' or '#', not {camera!r}"
        )


def person_object_id(person_id: int) -> str:
    """The Home Assistant object id of a person's "last seen" sensor."""
    return f"person_{person_id}_last_seen"


def last_seen_topic(topic_prefix: str, person_id: int | str) -> str:
    return f"{topic_prefix}/people/{person_id}/last_seen"


def _last_seen_person(topic_prefix: str, topic: str) -> int | None:
    """The person id of a last-seen topic under ``topic_prefix``, or None."""
    head, tail = f"{topic_prefix}/people/", "/last_seen"
    middle = topic[len(head) : -len(tail)] if topic.startswith(head) and topic.endswith(tail) else ""
    return int(middle) if middle.isascii() and middle.isdigit() else None  # not "²"


def _later(seconds: float, call: Callable[..., None], **arguments: int) -> None:
    wait = threading.Timer(seconds, call, kwargs=arguments)
    wait.daemon = True
    wait.start()


def _device(node_id: str) -> dict[str, Any]:
    return {
        "identifiers": [node_id],
        "name": node_id,
        "manufacturer": "faceforge",
        "model": "camera agent",
    }


def discovery_configs(
    camera: str, people: list[Person], status_topic: str, topic_prefix: str = BASE_TOPIC
) -> list[tuple[str, dict[str, Any]]]:
    """Home Assistant discovery configs ``(object_id, config)``: the camera's sensor, then one per person."""
    camera_id = slug(camera)
    node_id = slug(topic_prefix)
    decisions = f"{topic_prefix}/{camera_id}/person"
    configs: list[tuple[str, dict[str, Any]]] = [
        (
            f"{camera_id}_person",
            {
                "name": f"{camera} last person",
                "unique_id": f"{node_id}_{camera_id}_person",
                "state_topic": decisions,
                "value_template": f"{{{{ value_json.name if value_json.name else '{STRANGER_STATE}' }}}}",
                "json_attributes_topic": decisions,
                "availability_topic": status_topic,
                "icon": "mdi:face-recognition",
                "device": _device(node_id),
            },
        )
    ]
    for person in people:
        topic = last_seen_topic(topic_prefix, person.id)
        configs.append(
            (
                person_object_id(person.id),
                {
                    "name": f"{person.name} last seen",
                    "unique_id": f"{node_id}_person_{person.id}_last_seen",
                    "state_topic": topic,
                    "value_template": "{{ value_json.time }}",
                    "json_attributes_topic": topic,
                    "device_class": "timestamp",
                    "icon": "mdi:account-clock",
                    "device": _device(node_id),
                },
            )
        )
    return configs
