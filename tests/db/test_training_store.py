"""The training store's transactions against each other on a real PostgreSQL (READ COMMITTED: each
statement sees what others committed before it, so the order of reads and locks decides races)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from faceforge.building.worker.trainer import TrainingWorker
from faceforge.core.config import Settings
from faceforge.core.errors import ConflictError
from faceforge.core.records import ModelVersion, VersionStatus
from faceforge.storage import training_store
from faceforge.storage.engine import make_sessionmaker
from faceforge.storage.tables import ModelVersionRow, TrainingStateRow
from tests.api.fixtures import wait_for
from tests.db.postgresql_locks import POSTGRESQL_ONLY, blocked_by


def _ready_versions(sessions: sessionmaker[Session], versions: list[int], *, current: int) -> None:
    with sessions.begin() as session:
        for version in versions:
            session.add(ModelVersionRow(version=version, status=VersionStatus.READY, target=version))
        state = session.get(TrainingStateRow, 1)
        assert state is not None
        state.current_version = state.last_success_version = current


@POSTGRESQL_ONLY
def test_an_activation_racing_a_prune_never_makes_a_pruned_version_current(engine: Engine) -> None:
    sessions = make_sessionmaker(engine)
    _ready_versions(sessions, [1, 2], current=2)

    def activate() -> ModelVersion:
        with sessions.begin() as session:
            return training_store.activate_version(session, version=1)

    with ThreadPoolExecutor(max_workers=1) as pool, sessions.begin() as pruning:
        assert training_store.prune_versions(pruning, keep=1) == [1]  # not committed yet
        activation = pool.submit(activate)
        # The activation has started and waits for the prune's transaction.
        wait_for(lambda: blocked_by(pruning, engine), timeout=30, what="the activation to wait")
        pruning.commit()
        with pytest.raises(ConflictError):
            activation.result(timeout=30)

    with sessions() as session:
        assert training_store.current_version(session) == 2
        assert training_store.get_version(session, version=1).status == VersionStatus.PRUNED


@POSTGRESQL_ONLY
def test_an_activation_waits_for_a_publish_that_judged_the_current_version(
    engine: Engine, settings: Settings
) -> None:
    """The hold-back decision compares the new version with the current one; an activation meanwhile
    would make the new version replace a version it was never compared with (a reviewer's finding:
    the decision read the current version before publishing locked the state row)."""
    sessions = make_sessionmaker(engine)
    _ready_versions(sessions, [1, 2], current=2)
    worker = TrainingWorker(settings, sessions)

    def activate() -> ModelVersion:
        with sessions.begin() as session:
            return training_store.activate_version(session, version=1)

    with ThreadPoolExecutor(max_workers=1) as pool:
        with sessions.begin() as publishing:
            assert worker.reason_to_hold_back(publishing, {}) is None  # version 2 has no figures
            activation = pool.submit(activate)
            wait_for(lambda: blocked_by(publishing, engine), timeout=30, what="the activation to wait")
        assert activation.result(timeout=30).version == 1
