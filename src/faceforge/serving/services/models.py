"""Model versions as the API sees them: listing, activation, published files, and recognition heads
loaded for identify, all read through ``storage.version_store``.

The current version is asked for by every phone on every start (``model/info``), so it is cached
per process and re-read from the database only when the store's ``CURRENT`` pointer changes (any
process that changes the current version touches it) or, as a safety net for a pointer change a
shared volume reports late, after ``CURRENT_RECHECK_SECONDS``.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from faceforge.core.config import Settings
from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.core.errors import ModelNotReadyError, NotFoundError
from faceforge.core.model.head import RecognitionHead
from faceforge.core.records import ModelVersion, TrainingStatus, VersionStatus
from faceforge.storage import training_store
from faceforge.storage.current_version import make_current
from faceforge.storage.tables import PersonRow
from faceforge.storage.version_store import PointerStamp, VersionStore

CURRENT_RECHECK_SECONDS = 2.0
LOADED_HEADS = 4  # the current version, and a few a client may still ask for by number


@dataclass(frozen=True, slots=True)
class CurrentRead:
    model: ModelVersion | None  # None: no version is current yet
    stamp: PointerStamp | None
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
        self._current: CurrentRead | None = None
        self._lock = threading.Lock()

    def training_status(self) -> TrainingStatus:
        with self.sessions() as session:
            return training_store.training_status(
                session, stale_after=self.settings.worker.stale_after_seconds
            )

    def list(self) -> list[ModelVersion]:
        with self.sessions() as session:
            return training_store.list_versions(session)

    def get(self, version: int) -> ModelVersion:
        with self.sessions() as session:
            return training_store.get_version(session, version=version)

    def current(self) -> ModelVersion:
        """The current version (``ModelNotReadyError`` if there is none yet)."""
        model = self._current_model()
        if model is None:
            raise ModelNotReadyError("model is not ready")
        return model

    def current_or_none(self) -> ModelVersion | None:
        return self._current_model()

    def cached_current(self) -> CurrentRead | None:
        """The cached answer of ``current`` if it is still fresh, found without the database (one
        ``stat``); ``None`` means ask ``current``."""
        cached = self._current
        if cached is None or time.monotonic() - cached.read_at >= CURRENT_RECHECK_SECONDS:
            return None
        return cached if cached.stamp == self.store.pointer_stamp() else None

    def _current_model(self) -> ModelVersion | None:
        cached = self.cached_current()
        if cached is not None:
            return cached.model
        # The stamp is taken before the database is read: a change that lands during the read moves
        # the pointer again, so the next request reads afresh.
        stamp = self.store.pointer_stamp()
        now = time.monotonic()
        with self.sessions() as session:
            version = training_store.current_version(session)
            model = None if version is None else training_store.get_version(session, version=version)
        self._current = CurrentRead(model, stamp, now)
        return model

    def suspected_duplicates_of(self, person_id: int) -> builtins.list[dict[str, Any]]:
        """The newest built version's suspicions that involve ``person_id``: the other person, how
        alike. The newest, not the current: a version held back because of a duplicate pair is the
        one that knows about it."""
        with self.sessions() as session:
            model = next(
                (v for v in training_store.list_versions(session) if v.status == VersionStatus.READY), None
            )
            if model is None:
                return []
            # A pair merged (or a person deleted) since that version was built is no longer a suspicion.
            alive = {
                person_id
                for suspect in model.metrics.get("suspected_duplicates", [])
                for person_id in suspect["people"]
                if session.get(PersonRow, person_id) is not None
            }
        found = []
        for suspect in model.metrics.get("suspected_duplicates", []):
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
                    "version": model.version,
                }
            )
        return found

    def activate(self, version: int) -> ModelVersion:
        return make_current(
            self.sessions,
            self.store,
            lambda session: training_store.activate_version(session, version=version),
        )

    def file(self, version: int, name: str) -> tuple[Path, str]:
        """Path and sha256 of a ready version's file."""
        model = self.get(version)
        if model.status is not VersionStatus.READY:
            raise NotFoundError(f"model version {version} is {model.status}; its files are not served")
        path = self.store.file(version, name, model.files)
        return path, str(model.files[name]["sha256"])

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
