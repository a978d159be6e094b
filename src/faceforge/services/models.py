"""Model versions: listing, activation, published files, and recognition heads loaded for identify."""

from __future__ import annotations

import builtins
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from faceforge.config import Settings
from faceforge.db import training_store
from faceforge.domain.errors import ModelNotReadyError, NotFoundError
from faceforge.domain.records import ModelVersion, TrainingStatus, VersionStatus
from faceforge.registry.artifacts import read_manifest, version_file
from faceforge.training.head import RecognitionHead
from faceforge.training.serialize import HEAD_FILE, head_from_files
from faceforge.vision.embedder import EMBEDDER_NAME


@dataclass(frozen=True, slots=True)
class LoadedModel:
    version: int
    head: RecognitionHead
    people: list[dict[str, object]]  # index-aligned with head.labels: id, name, position


class ModelService:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self._heads: dict[int, LoadedModel] = {}
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
        with self.sessions() as session:
            version = training_store.current_version(session)
            if version is None:
                raise ModelNotReadyError("model is not ready")
            return training_store.get_version(session, version=version)

    def suspected_duplicates_of(self, person_id: int) -> builtins.list[dict[str, Any]]:
        """The current version's suspicions that involve ``person_id``: the other person, how alike."""
        try:
            model = self.current()
        except ModelNotReadyError:
            return []
        found = []
        for suspect in model.metrics.get("suspected_duplicates", []):
            people = suspect["people"]  # a pair
            if person_id not in people:
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
        with self.sessions.begin() as session:
            return training_store.activate_version(session, version=version)

    def file(self, version: int, name: str) -> tuple[Path, str]:
        """Path and sha256 of a ready version's file."""
        model = self.get(version)
        if model.status is not VersionStatus.READY:
            raise NotFoundError(f"model version {version} is {model.status}; its files are not served")
        path = version_file(self.settings.models_dir, version, name, model.files)
        return path, str(model.files[name]["sha256"])

    def loaded(self, version: int | None) -> LoadedModel:
        """The recognition head of ``version`` (default: current), read once and verified by checksum."""
        model = self.current() if version is None else self.get(version)
        if model.status is not VersionStatus.READY:
            raise ModelNotReadyError(f"model version {model.version} is {model.status}")
        with self._lock:
            cached = self._heads.get(model.version)
            if cached is not None:
                return cached
        data = version_file(self.settings.models_dir, model.version, HEAD_FILE, model.files).read_bytes()
        if hashlib.sha256(data).hexdigest() != model.files[HEAD_FILE]["sha256"]:
            raise ModelNotReadyError(
                f"model version {model.version}: {HEAD_FILE} does not match its checksum"
            )
        manifest = read_manifest(self.settings.models_dir, model.version)
        built_by = manifest.get("embedder", {}).get("name")
        if built_by != EMBEDDER_NAME:
            # An older release's version: its prototypes live in another embedding space.
            raise ModelNotReadyError(
                f"model version {model.version} was built with the {built_by} embedder and this server "
                f"embeds faces with {EMBEDDER_NAME}; the stored photos are embedded again and a new "
                "version is trained (GET /api/v1/training)"
            )
        head = head_from_files(data, manifest)
        by_label = {entry["label"]: entry for entry in manifest["people"]}
        people = [
            {
                "person_id": by_label[label]["id"],
                "name": by_label[label]["name"],
                "position": by_label[label]["position"],
            }
            for label in head.labels
        ]
        loaded = LoadedModel(model.version, head, people)
        with self._lock:
            self._heads[model.version] = loaded
        return loaded
