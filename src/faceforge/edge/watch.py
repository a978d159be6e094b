"""``faceforge watch``: wires the agent's parts together, in the order that fails fast.

A bad ``--mqtt`` address, a source that cannot be opened and a detector whose files are missing
are refused (``WatchError``) before anything runs. The model comes from the cache when the server
cannot be reached (offline); without a cached model a camera waits for the server, with back-off,
and a video file is refused.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from faceforge.core.errors import WeightsUnavailableError
from faceforge.edge.agent import BACKOFF_SECONDS, Agent, ModelUpdates, make_detector
from faceforge.edge.choices import DetectorName, ModelChoice
from faceforge.edge.errors import NoModelVersion, WatchError
from faceforge.edge.models import (
    CachedVersion,
    ModelStore,
    ServerClient,
    check_server_url,
    server_failure,
)
from faceforge.edge.publish import (
    BASE_TOPIC,
    DISCOVERY_PREFIX,
    Decision,
    Publisher,
    check_camera_name,
    check_discovery_prefix,
    check_topic_prefix,
    parse_broker_url,
    slug,
)
from faceforge.edge.runtime import EdgeModel
from faceforge.edge.source import LiveFrames, file_frames, is_live, open_source

log = logging.getLogger(__name__)

SPOOL_FILE = "unsent-{camera}.jsonl"


def spool_file(topic_prefix: str, camera: str) -> str:
    """The file a camera's unsent decisions wait in: one per topic prefix too, so that decisions kept
    under one prefix are not sent under another by a later run (the default prefix keeps the name
    earlier releases gave it)."""
    # "." is in no slug: "home" + "front-door" and "home-front" + "door" stay two files.
    name = slug(camera) if topic_prefix.strip("/") == BASE_TOPIC else f"{slug(topic_prefix)}.{slug(camera)}"
    return SPOOL_FILE.format(camera=name)


@dataclass(frozen=True)
class WatchOptions:
    source: str
    cache: Path
    camera: str
    server: str | None = None
    api_key: str | None = None
    mqtt: str | None = None
    model: ModelChoice = ModelChoice.TFLITE_INT8
    detector: DetectorName = DetectorName.MTCNN
    poll_seconds: float = 60.0
    drain_seconds: float = 30.0
    discovery_prefix: str = DISCOVERY_PREFIX
    topic_prefix: str = BASE_TOPIC
    realtime: bool = False
    threads: int = 1


def _first_model(
    store: ModelStore, server: ServerClient | None, updates: ModelUpdates | None, *, wait: bool = True
) -> CachedVersion:
    """The model to start on: the server's current version, else the cached one, which ``updates``
    is told (its first answer from the server then fetches only a newer one: the same version was
    downloaded and loaded again, and discovery announced again). A server that has no version
    (nobody enrolled, or every person deleted) makes the cached one forgotten: there is nobody to
    name. Without a model, a camera (``wait``) waits for the server with back-off, as a device that
    boots before it must; a video file is refused at once (it would wait for ever on a command run by
    hand)."""
    cached = store.cached()
    if server is None or updates is None:
        if cached is None:
            raise WatchError(f"no model cached in {store.directory}: give --server URL once")
        return cached
    failures = 0
    said = ""  # the kind of wait last said (no version, or no server): said once until it changes
    while True:
        try:
            version = updates.check()
            if version is None:  # the loaded one: none is loaded before the first answer
                raise WatchError("the server's current version is loaded but not cached")
            return version
        except WatchError:
            raise
        except NoModelVersion:  # ``check`` forgot the cached version
            cached = None
            kind, reason = "nobody", "the server has no model version (nobody is enrolled)"
            if not wait:
                raise WatchError(f"{reason}: no model to watch with") from None
        except Exception as error:  # network and HTTP errors: use the cache, or wait for the server
            if cached is not None:
                log.warning(
                    "the server cannot be reached (%s): running offline on version %d",
                    server_failure(error),
                    cached.version,
                )
                updates.running(cached.version, unreachable_said=True)
                return cached
            if not wait:
                raise WatchError(
                    f"no model from the server ({server_failure(error)}) and none cached in {store.directory}"
                ) from None
            kind, reason = (
                "unreachable",
                f"the server cannot be reached ({server_failure(error)}) and no model is cached",
            )
        # At most --poll apart: past a minute of back-off, a camera waiting for the first version
        # named the first person enrolled up to a minute late whatever --poll said.
        delay = min(BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)], updates.poll_seconds)
        if kind != said:  # each try said it again while the server was down
            log.warning("%s: checking again, at most every %.0f s", reason, updates.poll_seconds)
            said = kind
        failures += 1
        time.sleep(delay)


def _stop_on_sigterm() -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def watch(options: WatchOptions, print_line: Callable[[str], None]) -> None:
    """Run the agent until the source ends (a file) or the process is stopped (a stream)."""
    broker = parse_broker_url(options.mqtt) if options.mqtt else None
    check_topic_prefix(options.topic_prefix)
    check_discovery_prefix(options.discovery_prefix)
    check_camera_name(options.camera)
    if options.server:
        check_server_url(options.server)
    container = open_source(options.source)
    live = is_live(options.source, container)
    try:
        detector = make_detector(options.detector)
    except WeightsUnavailableError as error:
        container.close()
        raise WatchError(str(error)) from None
    store = ModelStore(options.cache.expanduser(), options.model)
    server = ServerClient(options.server, options.api_key) if options.server else None
    updates = ModelUpdates(store, server, options.poll_seconds, None) if server else None
    publisher: Publisher | None = None
    try:
        version = _first_model(store, server, updates, wait=live)
        model = EdgeModel(version, threads=options.threads)
        callbacks: list[Callable[[Decision], None]] = [lambda decision: print_line(decision.to_json())]
        if broker is not None:
            spool = store.directory / spool_file(options.topic_prefix, options.camera)
            publisher = Publisher(
                broker,
                options.camera,
                spool,
                discovery_prefix=options.discovery_prefix,
                topic_prefix=options.topic_prefix,
            )
            publisher.set_people(version.roster)
            publisher.start()
            callbacks.append(publisher.publish)

        def new_model(loaded: EdgeModel) -> None:
            if publisher is not None:
                publisher.set_people(loaded.version.roster)

        agent = Agent(
            model,
            detector,
            options.camera,
            callbacks,
            updates=updates,
            on_model=new_model,
            threads=options.threads,
        )
        if updates is not None:
            updates.start()
        _stop_on_sigterm()
        if live:
            frames = LiveFrames(options.source, container)
            try:
                agent.run(frames)
            finally:
                frames.stop()
        else:
            agent.run(file_frames(container, realtime=options.realtime))
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        if updates is not None:
            updates.stop()
        if publisher is not None:
            if not publisher.drain(options.drain_seconds) and len(publisher.spool):
                log.warning(
                    "%d decisions not acknowledged by the broker yet: %s",
                    len(publisher.spool),
                    f"kept in {publisher.spool.path} for the next start"
                    if publisher.spool.written
                    else f"lost, for {publisher.spool.path} cannot be written",
                )
            publisher.stop()
        if server is not None:
            server.close()
