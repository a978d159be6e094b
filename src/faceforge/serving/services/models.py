"""Model versions as the API sees them: listing, activation, published files, and recognition heads
loaded for identify, all read through ``storage.version_store``.

Each version is seen as the database says it is (exists, status, times, current) and, once ready, as
its ``manifest.json`` says (roster, threshold, metrics, files): ``ModelView`` joins the two, and
nothing of the manifest is kept in the database. Manifests are parsed once per process
(``VersionStore.published``). A ready version whose manifest is missing or damaged is a fault of this
server: asked for by number (or as the current one) it answers ``invalid_manifest``; in the listing
it is shown with what is wrong as its status message, and the other versions as they are.

The current version is asked for by every phone on every start (``model/info``), so it is cached
per process and re-read from the database only when the store's ``CURRENT`` pointer changes (any
process that changes the current version touches it) or, as a safety net for a pointer change a
shared volume reports late, after ``CURRENT_RECHECK_SECONDS``.

Identify must not name people deleted (or merged into another) since a version was built, so it checks
the version's roster against the database; that check is cached the same way, on the store's
``PEOPLE-REMOVED`` file, which every deletion and merge rewrites after its commit. A database read per
identify cost 1.0 ms of each (SQLite, one API process, measured with the read and without).
"""

from __future__ import annotations

import builtins
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from faceforge.core.config import Settings
from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.core.errors import ModelNotReadyError, NotFoundError, RequestRejectedError
from faceforge.core.model.head import RecognitionHead
from faceforge.core.model.manifest import ManifestError
from faceforge.core.records import ModelVersion, TrainingStatus, VersionStatus
from faceforge.storage import people_store, training_store
from faceforge.storage.current_version import make_current
from faceforge.storage.tables import PersonRow
from faceforge.storage.version_store import PointerStamp, PublishedManifest, RemovalsStamp, VersionStore

CURRENT_RECHECK_SECONDS = 2.0
LOADED_HEADS = 4  # the current version, and a few a client may still ask for by number
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelView:
    """A version as readers see it: ``record``, what the database says, and for a ready version
    ``published``, what its manifest says. Building, failed and pruned versions have no manifest to
    read (never written, or deleted with their files): no roster, threshold, metrics or files.
    ``damage``: why a ready version's manifest could not be read (listings only)."""

    record: ModelVersion
    published: PublishedManifest | None = None
    damage: str | None = None
    # The people it names who were deleted or merged since (``ModelService.checked``; None where
    # nobody looked, as on the current version, which phones ask for far more often).
    deleted: tuple[int, ...] | None = None

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def status(self) -> VersionStatus:
        return self.record.status

    @property
    def status_message(self) -> str | None:
        message = self.record.status_message
        if self.deleted and not self.is_current and message and message.startswith(HELD_BACK):
            # Its advice ("merge them, or make this version current") can no longer be followed, and
            # it named the people, a deleted one perhaps (two testers read it beside "it cannot be made
            # current again").
            message = HELD_BACK_THEN
        if self.damage is None:
            return message
        return " ".join(part for part in (self.damage, message) if part)

    @property
    def created_at(self) -> datetime:
        return self.record.created_at

    @property
    def finished_at(self) -> datetime | None:
        return self.record.finished_at

    @property
    def embedder(self) -> str | None:
        return self.record.embedder

    @property
    def is_current(self) -> bool:
        return self.record.is_current

    @property
    def threshold(self) -> float | None:
        return None if self.published is None else self.published.manifest.threshold

    @property
    def people(self) -> builtins.list[dict[str, Any]]:
        """The roster in the head's label order: id, name, position; the people deleted since (once
        ``checked``) without their name or position."""
        if self.published is None:
            return []
        gone = set(self.deleted or ())
        return [
            {"id": p.id, "name": DELETED_NAME, "position": None}
            if p.id in gone
            else {"id": p.id, "name": p.name, "position": p.position}
            for p in self.published.manifest.people
        ]

    @property
    def deleted_people(self) -> builtins.list[int] | None:
        return None if self.deleted is None else list(self.deleted)

    @property
    def calibration(self) -> dict[str, Any]:
        """How the threshold was chosen (method, target, the estimate and what it weighed), as the
        manifest says: what a dashboard or an app shows beside the threshold."""
        if self.published is None:
            return {}
        calibration = dict(self.published.manifest.calibration)
        gone = set(self.deleted or ())
        suspects = calibration.get("suspected_duplicates")
        if gone and isinstance(suspects, list):
            calibration["suspected_duplicates"] = [
                {**suspect, "labels": [_unnamed(str(label), gone) for label in suspect.get("labels", [])]}
                if isinstance(suspect, dict)
                else suspect
                for suspect in suspects
            ]
        return calibration

    @property
    def metrics(self) -> dict[str, Any]:
        if self.published is None:
            return {}
        return _without_names(dict(self.published.manifest.metrics), set(self.deleted or ()))

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        """Every file a client may download, manifest.json included: sha256 and size (none for a
        version naming people deleted since, but the current one: ``refuse_deleted_people``)."""
        if self.published is None or (self.deleted and not self.is_current):
            return {}
        return {name: entry.model_dump() for name, entry in self.published.files.items()}


HELD_BACK = "held back:"  # how a version built but not made current says why (building.worker.trainer)
HELD_BACK_THEN = "held back when it was built; it names people deleted or merged since, so it stays so"
# In place of the name of someone deleted since a version was built: a version's listing named them
# to any read key after the deletion (a reviewer's), though their files are no longer served.
DELETED_NAME = "a deleted person"
_LABEL_ID = re.compile(r"\((\d+)\)\Z")  # a class label: "Name (id)"


def _unnamed(label: str, gone: set[int]) -> str:
    """A class label ("Name (id)"), without the name if the id is in ``gone``."""
    found = _LABEL_ID.search(label)
    return f"{DELETED_NAME} ({found.group(1)})" if found and int(found.group(1)) in gone else label


def _without_names(metrics: dict[str, Any], gone: set[int]) -> dict[str, Any]:
    """``metrics`` with the names of the people in ``gone`` replaced (``DELETED_NAME``) where they
    appear: the people whose photos agree least, and the suspected duplicates."""
    if not gone:
        return metrics
    quality = metrics.get("quality")
    if isinstance(quality, dict) and isinstance(quality.get("people"), list):
        people = [
            {**person, "label": _unnamed(str(person.get("label", "")), gone)} for person in quality["people"]
        ]
        metrics["quality"] = {**quality, "people": people}
    suspects = metrics.get("suspected_duplicates")
    if isinstance(suspects, list):
        metrics["suspected_duplicates"] = [
            {
                **suspect,
                "names": [
                    DELETED_NAME if person_id in gone else name
                    for person_id, name in zip(suspect["people"], suspect["names"], strict=True)
                ],
            }
            for suspect in suspects
        ]
    return metrics


@dataclass(frozen=True, slots=True)
class CurrentRead:
    model: ModelView | None  # None: no version is current yet
    stamp: PointerStamp | None
    read_at: float


@dataclass(frozen=True, slots=True)
class RosterRead:
    """What identify recognises with a version, as the database said at ``read_at``: ``people``, the
    count of people with an id up to its roster's largest, changes exactly when one of them goes."""

    people: int
    model: LoadedModel
    stamp: RemovalsStamp  # taken before the read
    read_at: float


@dataclass(frozen=True, slots=True)
class LoadedModel:
    version: int
    head: RecognitionHead
    people: list[dict[str, object]]  # index-aligned with head.labels: id, name, position


class ModelService:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.store = VersionStore(settings.models_dir)
        self._heads: OrderedDict[int, LoadedModel] = OrderedDict()
        self._recognising: OrderedDict[int, RosterRead] = OrderedDict()  # by version, least recent first
        self._current: CurrentRead | None = None
        self._lock = threading.Lock()

    def training_status(self) -> TrainingStatus:
        with self.sessions() as session:
            status = training_store.training_status(
                session, stale_after=self.settings.worker.stale_after_seconds
            )
        cached = self._current
        cached_version = None if cached is None or cached.model is None else cached.model.version
        if cached is not None and cached_version != status.current_version:
            # The database names another current version than the one cached here: the worker
            # rewrites the pointer just after its commit, so a client that reads "built" here and then
            # asks for the current version could get the old one for that moment.
            self._current = None
        return status

    def training_figures(self) -> tuple[TrainingStatus, dict[str, tuple[int, float]]]:
        """What ``/metrics`` exports: the queue (a running training never shown as stale there) and
        every finished training's count and seconds by outcome, read in one session."""
        with self.sessions() as session:
            status = training_store.training_status(session, stale_after=float("inf"))
            return status, training_store.training_outcomes(session)

    def view(self, record: ModelVersion) -> ModelView:
        """``record`` with its manifest if it is ready (``ManifestError`` if that cannot be read)."""
        if record.status is not VersionStatus.READY:
            return ModelView(record)
        try:
            return ModelView(record, self.store.published(record.version, created_at=record.created_at))
        except ManifestError:
            # Pruned since ``record`` was read (its folder goes right after its row says so) is no fault.
            with self.sessions() as session:
                again = training_store.get_version(session, version=record.version)
            if again.status is VersionStatus.READY:
                raise
            return ModelView(again)

    def _listed(self, record: ModelVersion) -> ModelView:
        """As ``view``, but a damaged version is listed with what is wrong: one broken folder must not
        hide every other version (nor the way to activate one of them)."""
        try:
            return self.view(record)
        except ManifestError as error:
            log.warning("model version %d is listed without its manifest: %s", record.version, error.message)
            return ModelView(record, damage=f"{error.message}.")

    def page(
        self, *, offset: int = 0, limit: int | None = None, status: VersionStatus | None = None
    ) -> tuple[builtins.list[ModelView], int]:
        """Versions newest first, ``limit`` of them from ``offset`` (only those with ``status``), and
        how many there are in all."""
        with self.sessions() as session:
            records, total = training_store.list_versions(session, offset=offset, limit=limit, status=status)
        return self.checked([self._listed(record) for record in records]), total

    def get(self, version: int) -> ModelView:
        with self.sessions() as session:
            record = training_store.get_version(session, version=version)
        return self.view(record)

    def checked(self, views: builtins.list[ModelView]) -> builtins.list[ModelView]:
        """``views`` with the people each names who were deleted or merged since: such a version
        cannot be made current (``activate``), and a dashboard offered it anyway. One query for all
        of them: their rosters overlap (at 500 versions of 10,000 people, the ids of one)."""
        ready = [view for view in views if view.published is not None]
        named = sorted({person["id"] for view in ready for person in view.people})
        with self.sessions() as session:
            existing = people_store.existing_people(session, named) if named else set()
        return [
            view
            if view.published is None
            else replace(view, deleted=tuple(sorted(p["id"] for p in view.people if p["id"] not in existing)))
            for view in views
        ]

    def current(self) -> ModelView:
        """The current version (``ModelNotReadyError`` if there is none yet)."""
        model = self._current_model()
        if model is None:
            raise ModelNotReadyError(self._why_none_is_current())
        return model

    def _why_none_is_current(self) -> str:
        """The 409's reason: "model is not ready" alone, after every photo was deleted (no one left
        to recognise), left a tester wondering whether to wait."""
        try:
            status = self.training_status()
        except Exception:  # the answer is the 409 either way; its reason is a courtesy
            log.exception("no reason read for the missing current version")
            return "model is not ready"
        failed_last = status.last_failure_version is not None and (
            status.last_success_version is None or status.last_failure_version > status.last_success_version
        )
        if failed_last and status.last_failure_message:
            return f"model is not ready: {status.last_failure_message}"
        if status.requested > status.built:
            return "model is not ready: the first version is being trained"
        return "model is not ready: no version yet (register people with photos; each change trains one)"

    def current_or_none(self) -> ModelView | None:
        return self._current_model()

    def cached_current(self) -> CurrentRead | None:
        """The cached answer of ``current`` if it is still fresh, found without the database (one
        ``stat``); ``None`` means ask ``current``."""
        cached = self._current
        if cached is None or time.monotonic() - cached.read_at >= CURRENT_RECHECK_SECONDS:
            return None
        return cached if cached.stamp == self.store.pointer_stamp() else None

    def _current_model(self) -> ModelView | None:
        cached = self.cached_current()
        if cached is not None:
            return cached.model
        # The stamp is taken before the database is read: a change that lands during the read moves
        # the pointer again, so the next request reads afresh.
        stamp = self.store.pointer_stamp()
        now = time.monotonic()
        with self.sessions() as session:
            version = training_store.current_version(session)
            record = None if version is None else training_store.get_version(session, version=version)
        # A damaged manifest raises here and nothing is cached: the next request looks again.
        model = None if record is None else self.view(record)
        self._current = CurrentRead(model, stamp, now)
        return model

    def suspected_duplicates_of(self, person_id: int) -> builtins.list[dict[str, Any]]:
        """The newest built version's suspicions that involve ``person_id``: the other person, how
        alike. The newest, not the current: a version held back because of a duplicate pair is the
        one that knows about it."""
        with self.sessions() as session:
            newest, _ = training_store.list_versions(session, limit=1, status=VersionStatus.READY)
            if not newest:
                return []
            record = newest[0]
            # A person's page must not fail for a damaged version: it then has no suspicions to show.
            suspects = self._listed(record).metrics.get("suspected_duplicates", [])
            # A pair merged (or a person deleted) since that version was built is no longer a suspicion.
            alive = {
                person_id
                for suspect in suspects
                for person_id in suspect["people"]
                if session.get(PersonRow, person_id) is not None
            }
        found = []
        for suspect in suspects:
            people = suspect["people"]  # a pair
            if person_id not in people or not alive.issuperset(people):
                continue
            other = 1 - people.index(person_id)
            found.append(
                {
                    "person_id": people[other],
                    "name": suspect["names"][other],
                    "similarity": suspect["similarity"],
                    "kind": suspect["kind"],
                    "version": record.version,
                }
            )
        return found

    def activate(self, version: int) -> ModelView:
        """Make a ready version current, unless it names people deleted since it was built (409
        ``names_deleted_people``): a deletion is for good, and rolling back must not undo it."""
        roster = [person["id"] for person in self.get(version).people]

        def change(session: Session) -> ModelVersion:
            deleted = sorted(set(roster) - people_store.existing_people(session, roster))
            if deleted:
                raise RequestRejectedError(
                    "names_deleted_people",
                    f"model version {version} names {len(deleted)} "
                    f"{'person' if len(deleted) == 1 else 'people'} deleted or merged into another since "
                    f"(id {', '.join(map(str, deleted))}) and cannot be made current; the versions trained "
                    "after that leave them out",
                    status=409,
                )
            return training_store.activate_version(session, version=version)

        record = make_current(self.sessions, self.store, change)
        return self.view(record)

    def file(self, version: int, name: str) -> tuple[Path, str]:
        """Path and sha256 of a ready version's file, as its manifest lists it. A version naming
        people deleted since serves none (``refuse_deleted_people``)."""
        model = self.get(version)
        if model.published is None:
            raise NotFoundError(f"model version {version} is {model.status}; its files are not served")
        self.refuse_deleted_people(model)
        files = model.published.files
        path = self.store.file(version, name, files)
        return path, files[name].sha256

    def refuse_deleted_people(self, model: ModelView) -> None:
        """410 ``names_deleted_people`` for a version other than the current one that names people
        deleted or merged since: its files hold their names and face templates, and a deletion is for
        good (a tester downloaded them from an old version after deleting everyone). The current one
        is still served until the version trained after the deletion replaces it: devices need it."""
        if model.is_current:
            return
        deleted = self.checked([model])[0].deleted
        if deleted:
            raise RequestRejectedError(
                "names_deleted_people",
                f"model version {model.version} names {len(deleted)} "
                f"{'person' if len(deleted) == 1 else 'people'} deleted or merged into another since "
                f"(id {', '.join(map(str, deleted))}): its files are no longer served; the versions "
                "trained after that leave them out",
                status=410,
            )

    def current_recognising(self) -> LoadedModel | None:
        """``recognising(None)``, or ``None`` before the first version (or with none current)."""
        try:
            return self.recognising(None)
        except ModelNotReadyError:
            return None

    def recognising(self, version: int | None) -> LoadedModel:
        """``loaded(version)`` without the people deleted since it was built: the version trained
        after a deletion takes a moment, an older version may be asked for by number, and neither may
        name someone deleted (their classes are left out; the others decide as they did)."""
        loaded = self.loaded(version)
        ids = [cast(int, person["person_id"]) for person in loaded.people]
        if not ids:
            return loaded
        # The stamp is taken before the database is read: a removal committed during the read
        # rewrites the file after its commit, so the next request reads afresh.
        stamp = self.store.removals_stamp()
        now = time.monotonic()
        cached = self._recognising.get(loaded.version)
        if cached is not None and cached.stamp == stamp and now - cached.read_at < CURRENT_RECHECK_SECONDS:
            with self._lock:
                if loaded.version in self._recognising:
                    self._recognising.move_to_end(loaded.version)
            return cached.model
        # Ids are never given again, so this count changes exactly when someone up to the roster's
        # largest id is deleted: one primary-key range count, and the roster itself is looked up
        # (and the head cut) only then. On the table, not the mapped class: the ORM's own statement
        # took 0.21 ms against 0.09 (SQLite, measured).
        people_table = PersonRow.__table__
        with self.sessions() as session:
            people = session.scalar(
                select(func.count()).select_from(people_table).where(people_table.c.id <= max(ids))
            )
            # After a removal the roster itself is looked up: on PostgreSQL a lower id may commit
            # later than a higher one, so an unchanged count alone could hide it.
            if cached is not None and cached.stamp == stamp and cached.people == people:
                answer = cached.model  # a version's head never changes
            else:
                existing = people_store.existing_people(session, ids)
                if len(existing) == len(ids):
                    answer = loaded
                else:
                    keep = [index for index, person_id in enumerate(ids) if person_id in existing]
                    answer = LoadedModel(
                        loaded.version, loaded.head.restricted(keep), [loaded.people[i] for i in keep]
                    )
        with self._lock:
            self._recognising[loaded.version] = RosterRead(people or 0, answer, stamp, now)
            self._recognising.move_to_end(loaded.version)
            while len(self._recognising) > LOADED_HEADS:
                self._recognising.popitem(last=False)
        return answer

    def loaded(self, version: int | None) -> LoadedModel:
        """The recognition head of ``version`` (default: current), read once and verified by checksum."""
        model = self.current() if version is None else self.get(version)
        if model.status is not VersionStatus.READY:
            raise ModelNotReadyError(f"model version {model.version} is {model.status}")
        with self._lock:
            cached = self._heads.get(model.version)
            if cached is not None:
                self._heads.move_to_end(model.version)
                return cached
        opened = self.store.open(model.version)
        built_by = opened.manifest.embedder.name
        if built_by != EMBEDDER_NAME:
            # An older release's version: its prototypes live in another embedding space.
            raise ModelNotReadyError(
                f"model version {model.version} was built with the {built_by} embedder and this server "
                f"embeds faces with {EMBEDDER_NAME}; the stored photos are embedded again and a new "
                "version is trained (GET /api/v1/training)"
            )
        head = opened.head()
        by_label = {entry.label: entry for entry in opened.manifest.people}
        people: builtins.list[dict[str, object]] = [
            {
                "person_id": by_label[label].id,
                "name": by_label[label].name,
                "position": by_label[label].position,
            }
            for label in head.labels
        ]
        loaded = LoadedModel(model.version, head, people)
        with self._lock:
            self._heads[model.version] = loaded
            while len(self._heads) > LOADED_HEADS:
                self._heads.popitem(last=False)
        return loaded
