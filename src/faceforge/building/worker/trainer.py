"""The training worker: claims pending training, fits the head, publishes a version.

Coalescing: each change increments ``training_state.requested``. A claim covers every request made so
far; changes that arrive while it runs leave ``requested > built`` behind, so exactly one more training
follows, covering all of them. The worker's loop claims only once the changes have paused for
``quiet_seconds`` (or the first waited ``max_delay_seconds``): a dashboard drop sends one photo per
request and an import one person at a time, and each burst should make one version, not one per
request that happened to land between trainings.

Recovery: a running training heart-beats; if its worker dies, the next worker fails that version and
trains the pending requests.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from faceforge.building.export.contract_vectors import (
    VECTOR_PHOTOS,
    VectorPhoto,
    contract_vectors,
    coverage_photos,
)
from faceforge.building.export.quiet import quiet_conversion_tools
from faceforge.building.networks.detector_graphs import write_split_graph
from faceforge.building.networks.embedding_graph import export_embedding_graph
from faceforge.building.networks.embedding_quantization import quantize_embedding_graph
from faceforge.building.version_builder import VectorMaker, VersionBuilder
from faceforge.building.worker.lease import lease_for
from faceforge.building.worker.orphans import sweep_orphans
from faceforge.building.worker.reembed import reembed_stale_photos
from faceforge.core.config import Settings
from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.core.errors import FaceforgeError
from faceforge.core.memory import freeze_survivors, thaw_frozen
from faceforge.core.model.head import Calibration
from faceforge.core.model.manifest import ManifestError
from faceforge.core.records import TrainingClaim
from faceforge.core.trainer_health import TrainerHealth
from faceforge.serving.services.strangers import STRANGER_PHOTOS
from faceforge.serving.vision.pipeline import FacePipeline, prepare_networks
from faceforge.storage import people_store, strangers_store, training_store
from faceforge.storage.current_version import make_current
from faceforge.storage.engine import read_one_snapshot
from faceforge.storage.photo_files import PhotoFiles

log = logging.getLogger(__name__)

PREPARING_STAGE = "preparing_backbones"
RESTART_MAX_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class _Burst:
    requested: int  # the request counter when last seen to change
    first_seen: float  # monotonic seconds: when this worker first saw changes pending
    last_change: float  # ... and when it last saw the counter move


class TrainingLost(Exception):
    """Another worker took the training over (this one was presumed dead)."""


class TrainingWorker:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        worker_id: str | None = None,
        pipeline: FacePipeline | None = None,
    ) -> None:
        """``pipeline``: the process's own (an API process that embeds this worker shares its networks
        rather than load them twice); by default one is made on first use."""
        self.settings = settings
        self.sessions = sessions
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.wake = threading.Event()
        self.stop = threading.Event()
        quiet_conversion_tools()  # also when the app runs under another server than `faceforge serve`
        self.builder = VersionBuilder(settings)
        self.store = self.builder.store
        bind = sessions.kw.get("bind")
        if not isinstance(bind, Engine):
            raise TypeError("the worker's sessionmaker must be bound to an engine")
        self.lease = lease_for(bind)
        self.holds_lease = False
        self.health = TrainerHealth()
        self._burst: _Burst | None = None  # the changes pending, as this worker saw them arrive
        self._pipeline = pipeline  # contract vectors, re-embedding

    def start_in_thread(self) -> Callable[[], None]:
        """Run on a daemon thread (the embedded worker); returns a function that stops it and waits."""
        thread = threading.Thread(target=self.run_supervised, name="faceforge-trainer", daemon=True)
        self.health.running = True  # from now on, not once the thread is scheduled: readiness asks at once
        thread.start()

        def stop() -> None:
            self.stop.set()
            self.wake.set()
            thread.join(timeout=30)
            thaw_frozen()

        return stop

    def run_supervised(self) -> None:
        """``run_forever`` until stopped, started again (after a pause that doubles up to
        ``RESTART_MAX_SECONDS``) whenever an error escapes it: a database that is down while the
        worker takes its lease, a failing orphan sweep. ``health`` says which it is doing."""
        while not self.stop.is_set():
            self.health.running = True
            try:
                self.run_forever()
            except Exception as error:
                self.health.running = False
                self.health.last_error = f"{type(error).__name__}: {error}"
                pause = min(RESTART_MAX_SECONDS, self.settings.worker.poll_seconds * 2**self.health.restarts)
                self.health.restarts += 1
                log.exception("the training worker stopped; it starts again in %.1f s", pause)
                self.stop.wait(pause)
            else:
                break
        self.health.running = False

    def run_forever(self) -> None:
        log.info("training worker %s started", self.worker_id)
        try:
            while not self.stop.is_set():
                if self.take_lease():
                    break
                self.wake.wait(self.settings.worker.poll_seconds)
                self.wake.clear()
            if not self.stop.is_set():
                self._prepare_backbones()
                self.reembed_after_upgrade()
                freeze_survivors()
            self._loop()
        finally:
            self.lease.release()
            self.holds_lease = False

    def take_lease(self) -> bool:
        """Whether this worker is the deployment's trainer now. A held lease is verified first (a
        database restart or failover ends it while this process lives on, and a standby may hold it
        now); a worker without it tries to become the trainer and then clears what a dead one left."""
        if self.holds_lease:
            if self.lease.verify():
                return True
            self.holds_lease = False
            log.warning("training worker %s lost the trainer's lease; it stands by", self.worker_id)
        if not self.lease.try_acquire():
            return False
        self.holds_lease = True
        log.info("training worker %s holds the trainer's lease", self.worker_id)
        with self.sessions.begin() as session:
            # Just acquired: a training still marked running belongs to a worker that died or lost the
            # lease. It is failed first, and committed: that worker may be about to publish it, and
            # must not make current a version whose folder the sweep below removes.
            taken = training_store.take_over_running(session)
        if taken is not None:
            log.warning("version %d's worker is gone; its training was taken over", taken)
        with self.sessions.begin() as session:
            sweep_orphans(
                session,
                models_dir=self.settings.models_dir,
                photos_dir=self.settings.files_dir / "photos",
                grace_seconds=self.settings.worker.orphan_grace_seconds,
                stranger_photos_dir=self.settings.files_dir / STRANGER_PHOTOS,
            )
        return True

    def _prepare_backbones(self) -> None:
        """Put the API processes' networks into the weights cache, and convert missing on-device
        backbones, before the first training (tens of seconds on a fresh machine), reported as the
        ``preparing_backbones`` stage."""

        # One backbone takes tens of seconds: the stage is repeated on a heartbeat meanwhile, or the
        # status would count it stale and show no stage at all until the next backbone.
        reported: list[float] = []  # the progress last reported, once any
        finished = threading.Event()

        def write(stage: str | None, progress: float) -> None:
            with self.sessions.begin() as session:
                training_store.report_preparation(
                    session, worker_id=self.worker_id, stage=stage, progress=progress
                )

        def report(done: int, total: int) -> None:
            progress = done / total if total else 1.0
            if done >= total:
                finished.set()
                heart.join()
                write(None, progress)
                return
            reported[:] = [progress]
            write(PREPARING_STAGE, progress)

        def beat() -> None:
            while not finished.wait(self.settings.worker.heartbeat_seconds):
                if reported:
                    try:
                        write(PREPARING_STAGE, reported[0])
                    except Exception:  # the next beat retries
                        log.exception("could not report the backbone conversion")

        heart = threading.Thread(target=beat, name="faceforge-preparation-heartbeat", daemon=True)
        heart.start()
        try:
            # First what API processes read from the cache: a serve-only install cannot make them.
            prepare_networks(
                self.settings.weights_dir,
                export=export_embedding_graph,
                quantize=quantize_embedding_graph,
                split=write_split_graph,
            )
            self.builder.prepare(report)
        except Exception:  # each training retries the conversion and fails with the reason
            log.exception("could not convert the on-device backbones")
            finished.set()
            heart.join()
            write(None, 0.0)
        finally:
            finished.set()

    @property
    def pipeline(self) -> FacePipeline:
        if self._pipeline is None:
            self._pipeline = FacePipeline(
                self.settings, export=export_embedding_graph, quantize=quantize_embedding_graph
            )
        return self._pipeline

    def _vector_maker(self, photos: list[tuple[int, int, str, dict[str, Any] | None]]) -> VectorMaker:
        """``contract_vectors.json`` from these enrolled photos (those whose file is gone are skipped),
        each with its enrolled face's box when known."""
        files = PhotoFiles(self.settings.files_dir / "photos")
        found = []
        for person_id, photo_id, name, box in photos:
            try:
                found.append(VectorPhoto(person_id, photo_id, files.path(name).read_bytes(), box))
            except OSError:
                log.warning("photo %d of person %d is missing: no contract vector", photo_id, person_id)
        return lambda head: contract_vectors(self.pipeline, head, found)

    def _reembed(self) -> int:
        return reembed_stale_photos(
            self.sessions,
            self.pipeline,
            PhotoFiles(self.settings.files_dir / "photos"),
            PhotoFiles(self.settings.files_dir / STRANGER_PHOTOS),
        )

    def reembed_after_upgrade(self) -> None:
        """Photos embedded by an older release are embedded again, and a version is trained from them:
        the current version's prototypes cannot be compared with this release's embeddings."""
        try:
            updated = self._reembed()
        except Exception:  # the next training retries
            log.exception("could not embed the stored photos again")
            return
        if updated:
            with self.sessions.begin() as session:
                people_store.request_training(session)

    def settled(self) -> int | None:
        """The request count the loop may claim up to now, or None while changes are still
        arriving: pending changes settle once they have paused for ``quiet_seconds`` (or waited
        ``max_delay_seconds`` since the first of them was seen). The pause is measured by this
        worker, polling the request counter any process may raise. The count matters: a change
        that lands between this answer and the claim starts a burst of its own, it is not claimed
        at once (a dashboard drop was split in two that way)."""
        quiet = self.settings.worker.quiet_seconds
        if quiet <= 0:
            return sys.maxsize
        with self.sessions() as session:
            requested, built = training_store.request_counts(session)
        now = time.monotonic()
        if requested <= built:
            self._burst = None
            return requested  # nothing to wait for (a claim may still take over an orphaned training)
        if self._burst is None or self._burst.requested != requested:
            first = self._burst.first_seen if self._burst is not None else now
            self._burst = _Burst(requested=requested, first_seen=first, last_change=now)
        if (
            now - self._burst.last_change >= quiet
            or now - self._burst.first_seen >= self.settings.worker.max_delay_seconds
        ):
            return requested
        return None

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                up_to = self.settled()
                worked = up_to is not None and self.run_once(up_to=up_to)
            except Exception:  # the loop must survive database hiccups; the next poll retries
                log.exception("training worker loop error")
                worked = False
            if not worked:
                self.wake.wait(self.settings.worker.poll_seconds)
                self.wake.clear()

    def run_once(self, up_to: int = sys.maxsize) -> bool:
        """Claim and run one training if one is pending, at once (the loop first waits for
        ``settled`` and passes the request count that settled as ``up_to``: with more requests
        pending, nothing is claimed). Returns whether a training was claimed."""
        if not self.take_lease():
            return False  # another live worker is the trainer
        with self.sessions.begin() as session:
            claim = training_store.claim_training(
                session,
                worker_id=self.worker_id,
                stale_after=self.settings.worker.stale_after_seconds,
                embedder=EMBEDDER_NAME,
                up_to=up_to,
            )
        if claim is None:
            return False
        beating = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(claim, beating), daemon=True)
        # Everything after the claim is inside: a Ctrl-C anywhere from here finds the handling below.
        try:
            self._burst = None  # the claim covers it
            heart.start()
            log.info("training version %d (requests up to %d)", claim.version, claim.target)
            self._train(claim)
        except TrainingLost:
            log.warning("version %d was taken over by another worker", claim.version)
        except KeyboardInterrupt:
            # An import training in-process (`faceforge worker` takes SIGINT itself and finishes the
            # training under way): the version is stopped, its requests left for the next run.
            with self.sessions.begin() as session:
                training_store.stop_training(session, claim=claim)
            raise
        except NothingToTrain as error:
            self._fail(claim, error.message, clear_current=True)
        except FaceforgeError as error:
            self._fail(claim, error.message)
        except Exception as error:  # recorded on the version; the current model stays
            log.exception("training version %d failed", claim.version)
            self._fail(claim, f"{type(error).__name__}: {error}")
        finally:
            beating.set()
            if heart.ident is not None:  # started
                heart.join()
        freeze_survivors()  # the first training imported the conversion tools: keep later ones quick
        return True

    def _fail(self, claim: TrainingClaim, message: str, *, clear_current: bool = False) -> None:
        def fail(session: Session) -> None:
            training_store.fail_training(session, claim=claim, message=message, clear_current=clear_current)

        if clear_current:
            make_current(self.sessions, self.store, fail)
            return
        with self.sessions.begin() as session:
            fail(session)

    def _heartbeat(self, claim: TrainingClaim, done: threading.Event) -> None:
        while not done.wait(self.settings.worker.heartbeat_seconds):
            try:
                with self.sessions.begin() as session:
                    if not training_store.report_progress(session, claim=claim, progress=None, stage=None):
                        return
            except Exception:
                log.exception("heartbeat failed")

    def _stage(self, claim: TrainingClaim, progress: float, stage: str) -> None:
        with self.sessions.begin() as session:
            if not training_store.report_progress(session, claim=claim, progress=progress, stage=stage):
                raise TrainingLost

    def _train(self, claim: TrainingClaim) -> None:
        started = time.perf_counter()
        self._stage(claim, 0.05, "loading")
        self._reembed()  # photos a previous release embedded (normally none)
        with self.sessions.begin() as session:  # one snapshot of people and strangers
            read_one_snapshot(session)
            faces, people = people_store.enrolled_faces(session, embedder=EMBEDDER_NAME)
            by_stranger = strangers_store.embeddings_by_stranger(session, embedder=EMBEDDER_NAME)
            first = people_store.first_photos(session, embedder=EMBEDDER_NAME, limit=VECTOR_PHOTOS)
            vector_photos: list[tuple[int, int, str, dict[str, Any] | None]] = [(*row, None) for row in first]
            vector_photos += coverage_photos(
                people_store.photo_geometry(session, embedder=EMBEDDER_NAME), {p for _, p, _ in first}
            )
        if not faces:
            raise NothingToTrain("no person has an accepted photo; there is nothing to recognise")
        embeddings = np.stack([np.frombuffer(face.embedding, dtype="<f4") for face in faces])
        strangers = [np.stack([np.frombuffer(e, dtype="<f4") for e in group]) for group in by_stranger]
        staged = self.builder.build(
            claim.version,
            embeddings,
            [face.person_id for face in faces],
            people,
            lambda progress, stage: self._stage(claim, progress, stage),
            strangers=strangers,
            started=started,
            vectors=self._vector_maker(vector_photos),
        )
        metrics = staged.metrics  # as the manifest holds them, train_seconds included
        pause = self.settings.worker.pause_before_publish_seconds
        if pause:
            self._stage(claim, 0.9, "paused")
            time.sleep(pause)
        self._stage(claim, 0.95, "publishing")
        roster = staged.manifest.people

        def publish(session: Session) -> tuple[list[int], str | None]:
            held_back = self.reason_to_hold_back(session, metrics)
            note = None if held_back else self._cost_of_strangers(session, staged.head.calibration, metrics)
            published = training_store.publish_version(
                session,
                claim=claim,
                held_back=held_back,
                note=note,
            )
            if not published:
                raise TrainingLost  # nothing changed: the transaction is rolled back, CURRENT left alone
            # In the same transaction: a reader sees the new version and the retention it implies together.
            keep, unusable = self.settings.worker.keep_versions, self._naming_deleted_people(session)
            return training_store.prune_versions(session, keep=keep, unusable=unusable), held_back

        stale, held_back = make_current(self.sessions, self.store, publish)
        self.store.prune(stale)
        log.info("version %d ready: %d people, %.2fs", claim.version, len(roster), metrics["train_seconds"])
        if held_back is not None:
            log.warning("version %d %s", claim.version, held_back)

    def _naming_deleted_people(self, session: Session) -> frozenset[int]:
        """The ready versions whose roster names someone deleted or merged since (read from their
        manifests: the retention keeps a handful). A manifest that cannot be read says nothing."""
        rosters: dict[int, list[int]] = {}
        for version in training_store.ready_versions(session):
            try:
                rosters[version] = [person.id for person in self.store.open(version).manifest.people]
            except (FaceforgeError, OSError, ValueError):
                continue
        named = sorted({person_id for roster in rosters.values() for person_id in roster})
        existing = people_store.existing_people(session, named) if named else set()
        return frozenset(v for v, roster in rosters.items() if not existing.issuperset(roster))

    def reason_to_hold_back(self, session: Session, metrics: dict[str, Any]) -> str | None:
        """The one decision whether a freshly built version becomes current: ``None`` makes it current;
        a reason publishes it ready but not current (the previous version keeps serving until someone
        activates this one), and is shown as its status message. Runs in the publishing transaction,
        so it sees the current version that publishing replaces: the state row is locked first (read
        unlocked, an activation committed before publishing took the lock was replaced by a version
        judged against the one before it)."""
        current = training_store.current_version(session, lock=True)
        if current is None:
            return None  # nothing to keep serving: a weak version beats none
        if self._names_deleted_people(session, current):
            return None  # a deletion must reach the devices, whatever else this version does worse
        below = self._below_floor(metrics)
        if below is not None:
            return below
        return self._new_duplicates(metrics, self._metrics_of(session, current))

    def _names_deleted_people(self, session: Session, version: int) -> bool:
        """Whether ready ``version``'s roster names someone deleted (or merged into another) since."""
        record = training_store.get_version(session, version=version)
        try:
            roster = [
                person.id
                for person in self.store.published(version, created_at=record.created_at).manifest.people
            ]
        except ManifestError:
            return False
        return len(people_store.existing_people(session, roster)) < len(set(roster))

    def _metrics_of(self, session: Session, version: int) -> dict[str, Any]:
        """The figures of ready ``version``, from its manifest (the database keeps none). A damaged
        one gives none: nothing then holds back the version that replaces it."""
        record = training_store.get_version(session, version=version)
        try:
            return self.store.published(version, created_at=record.created_at).manifest.metrics
        except ManifestError as error:
            log.warning("comparing with the current version without its figures: %s", error.message)
            return {}

    def _cost_of_strangers(
        self, session: Session, calibration: Calibration, metrics: dict[str, Any]
    ) -> str | None:
        """What the version says when collected strangers raised some people's thresholds and it accepts
        fewer enrolled photos than the current one: the user asked for it (a stranger who looks like
        someone), so it goes live, but not silently: a stranger who is in fact that person shows here."""
        current = training_store.current_version(session)
        if not calibration.raised_margins or current is None:
            return None
        accept = metrics.get("accept_rate")
        before = self._metrics_of(session, current).get("accept_rate")
        if accept is None or before is None or accept >= before:
            return None
        people = "1 person" if calibration.raised_margins == 1 else f"{calibration.raised_margins} people"
        return (
            f"collected strangers raised the threshold of {people}: held-out known photos accepted "
            f"{accept:.3f} ({before:.3f} with version {current}). If a stranger is one of the people, "
            "delete that stranger"
        )

    @staticmethod
    def _new_duplicates(metrics: dict[str, Any], current: dict[str, Any]) -> str | None:
        """Why not, if this version recognises fewer enrolled photos than the current one (held-out
        known accepted) while it suspects a pair of people the current one did not: one person under
        two names splits their photos between the names (the threshold itself is not moved by it)."""
        accept, before = metrics.get("accept_rate"), current.get("accept_rate")
        if accept is None or before is None or accept >= before:
            return None
        known = {frozenset(d.get("people", [])) for d in current.get("suspected_duplicates", [])}
        new = [
            d for d in metrics.get("suspected_duplicates", []) if frozenset(d.get("people", [])) not in known
        ]
        if not new:
            return None
        # A pair may be suspected several ways (as people, and a photo of one filed under the other,
        # either way round): named once.
        named: dict[frozenset[Any], str] = {}
        for suspect in new:
            named.setdefault(frozenset(suspect.get("people", [])), " and ".join(suspect.get("names", [])))
        pairs = "; ".join(named.values())
        return (
            f"held back: {pairs} look like one person (suspected duplicate); held-out known photos "
            f"accepted {accept:.3f} < {before:.3f} with the current version. Merge them, or make this "
            "version current if they are different people"
        )

    def _below_floor(self, metrics: dict[str, Any]) -> str | None:
        """Why this version must not become current, if its own held-out figures say so. Judged as if
        no collected stranger had raised anyone's threshold: strangers that look like some people
        cost their photos on purpose, and counted, they held back every later version (a tester's
        new person was never named)."""
        floor = self.settings.worker.min_known_accept
        raised = bool(metrics.get("raised_people"))
        accept = metrics.get("accept_rate")
        if raised and metrics.get("accept_rate_without_margins") is not None:
            # Either way: margins mostly cost photos, but a neighbour's margin can also keep one on
            # its own person, so the figure without them may be the lower (a reviewer's trial).
            accept = max(accept or 0.0, metrics["accept_rate_without_margins"])
        if accept is None or accept >= floor:
            return None
        whose = " (with or without the strangers' margins)" if raised else ""
        return (
            f"held back: held-out known photos{whose} accepted {accept:.3f} < floor {floor:.3f} "
            "(FACEFORGE_WORKER__MIN_KNOWN_ACCEPT); the previous version stays current"
        )


class NothingToTrain(FaceforgeError):
    code = "nothing_to_train"
