"""Training coordination and model versions. Only one training runs per deployment: a worker claims it
by locking the single ``training_state`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's
transactions take the database write lock up front)."""

from __future__ import annotations

import sys

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faceforge.core.errors import ConflictError, NotFoundError
from faceforge.core.records import (
    ModelVersion,
    TrainingClaim,
    TrainingState,
    TrainingStatus,
    VersionStatus,
)
from faceforge.storage.tables import ModelVersionRow, TrainingStateRow, as_utc, as_utc_required, utcnow
from faceforge.storage.trainer_presence import trainer_running

WORKER_LOST = "the worker building this version stopped responding; the training was taken over"
STOPPED = "stopped before it was built (interrupted); the next version has its changes"


def _state(session: Session, *, lock: bool) -> TrainingStateRow:
    query = select(TrainingStateRow).where(TrainingStateRow.id == 1)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).one()
    return row


def _version(row: ModelVersionRow, current: int | None) -> ModelVersion:
    return ModelVersion(
        version=row.version,
        status=VersionStatus(row.status),
        status_message=row.status_message,
        created_at=as_utc_required(row.created_at),
        finished_at=as_utc(row.finished_at),
        embedder=row.embedder,
        is_current=row.version == current,
    )


def _is_stale(row: TrainingStateRow, stale_after: float) -> bool:
    """``stale_after`` may be infinite (never stale), which ``timedelta`` cannot hold."""
    heartbeat = as_utc(row.heartbeat_at)
    if heartbeat is None:
        return True
    return (utcnow() - heartbeat).total_seconds() > stale_after


def training_status(session: Session, *, stale_after: float) -> TrainingStatus:
    row = _state(session, lock=False)
    running = row.running_version is not None and not _is_stale(row, stale_after)
    # A worker preparing (converting backbones) before any training reports its stage too.
    preparing = row.running_version is None and row.stage is not None and not _is_stale(row, stale_after)
    if running:
        state = TrainingState.RUNNING
    elif row.requested > row.built:
        state = TrainingState.QUEUED
    else:
        state = TrainingState.IDLE
    return TrainingStatus(
        state=state,
        requested=row.requested,
        built=row.built,
        building_version=row.running_version if running else None,
        progress=row.progress if running or preparing else 0.0,
        stage=row.stage if running or preparing else None,
        current_version=row.current_version,
        last_success_version=row.last_success_version,
        last_success_at=as_utc(row.last_success_at),
        last_failure_version=row.last_failure_version,
        last_failure_at=as_utc(row.last_failure_at),
        last_failure_message=row.last_failure_message,
        trainer_running=trainer_running(session) if state is TrainingState.QUEUED else None,
    )


def request_counts(session: Session) -> tuple[int, int]:
    """``(requested, built)``: changes recorded so far, and how many of them finished versions cover."""
    row = _state(session, lock=False)
    return row.requested, row.built


def _fail_version(session: Session, state: TrainingStateRow, version: int, message: str) -> None:
    row = session.get(ModelVersionRow, version)
    now = utcnow()
    if row is not None and row.status == VersionStatus.BUILDING:
        row.status, row.status_message, row.finished_at = VersionStatus.FAILED, message, now
    state.last_failure_version, state.last_failure_at, state.last_failure_message = version, now, message


def _clear_running(state: TrainingStateRow) -> None:
    state.running_version = state.running_target = state.worker_id = state.heartbeat_at = None
    state.progress, state.stage = 0.0, None


def claim_training(
    session: Session, *, worker_id: str, stale_after: float, embedder: str, up_to: int = sys.maxsize
) -> TrainingClaim | None:
    """Claim the pending training, if any and if nobody live is training; creates its ``building`` version.
    Nothing is claimed while more than ``up_to`` trainings are requested (the count the worker saw
    settle: later changes wait for their own pause).

    A training whose worker stopped heart-beating for ``stale_after`` seconds is failed and re-claimed,
    so a killed worker's pending request is trained by the next worker. (A worker that takes the
    trainer's lease has already failed any training still marked running: ``take_over_running``.)
    """
    state = _state(session, lock=True)
    if state.running_version is not None:
        if not _is_stale(state, stale_after):
            return None
        _fail_version(session, state, state.running_version, WORKER_LOST)
        _clear_running(state)
    if state.requested <= state.built or state.requested > up_to:
        return None
    version = int(session.scalar(select(func.coalesce(func.max(ModelVersionRow.version), 0))) or 0) + 1
    session.add(
        ModelVersionRow(
            version=version,
            status=VersionStatus.BUILDING,
            target=state.requested,
            worker_id=worker_id,
            embedder=embedder,
        )
    )
    state.running_version, state.running_target, state.worker_id = version, state.requested, worker_id
    state.heartbeat_at, state.progress, state.stage = utcnow(), 0.0, "claimed"
    session.flush()
    return TrainingClaim(version=version, target=state.requested, worker_id=worker_id)


def take_over_running(session: Session) -> int | None:
    """Fail the training still marked running, whoever's it is; returns its version. For a worker that
    has just taken the trainer's lease: that training's worker died or lost the lease, and must not
    publish it any more (``publish_version`` refuses a claim no longer owned) before its folder, not
    ready, is swept."""
    state = _state(session, lock=True)
    version = state.running_version
    if version is not None:
        _fail_version(session, state, version, WORKER_LOST)
        _clear_running(state)
    return version


def report_preparation(session: Session, *, worker_id: str, stage: str | None, progress: float) -> None:
    """A worker's work outside any training (``stage=None`` when it is done); shown by the status
    while no training runs."""
    state = _state(session, lock=True)
    if state.running_version is not None:
        return
    state.stage, state.progress = stage, progress
    state.worker_id, state.heartbeat_at = (worker_id, utcnow()) if stage is not None else (None, None)


def _owned(state: TrainingStateRow, claim: TrainingClaim) -> bool:
    return state.running_version == claim.version and state.worker_id == claim.worker_id


def report_progress(
    session: Session, *, claim: TrainingClaim, progress: float | None, stage: str | None
) -> bool:
    """Heartbeat (and optionally progress); False when the training was taken over by another worker."""
    state = _state(session, lock=True)
    if not _owned(state, claim):
        return False
    state.heartbeat_at = utcnow()
    if progress is not None:
        state.progress = progress
    if stage is not None:
        state.stage = stage
    return True


def publish_version(
    session: Session,
    *,
    claim: TrainingClaim,
    held_back: str | None = None,
    note: str | None = None,
) -> bool:
    """Mark the claimed version ready and make it current, or, with ``held_back`` (the reason), ready
    but not current: the previous version keeps serving until someone activates this one. ``note``
    is what a version made current says about itself (its status message). What the version holds is
    in its manifest, already on disk: nothing of it is copied here. False (nothing changed) if no
    longer owned."""
    state = _state(session, lock=True)
    if not _owned(state, claim):
        return False
    row = session.get(ModelVersionRow, claim.version)
    assert row is not None
    now = utcnow()
    row.status, row.finished_at, row.status_message = VersionStatus.READY, now, held_back or note
    state.built = max(state.built, claim.target)
    if held_back is None:
        state.current_version = claim.version
        state.last_success_version, state.last_success_at = claim.version, now
    else:
        state.last_failure_version, state.last_failure_at = claim.version, now
        state.last_failure_message = held_back
    _clear_running(state)
    return True


def stop_training(session: Session, *, claim: TrainingClaim) -> None:
    """A training its own process stopped (Ctrl-C on an import that trains): the version is failed as
    stopped, and the requests it covered stay pending, so the next training builds them. Left as it
    was, the next run took it over as "stopped responding", which reads as a crash. Not a failure of
    the training either: the last failure, which the status warns of, stays what it was."""
    state = _state(session, lock=True)
    if not _owned(state, claim):
        return
    row = session.get(ModelVersionRow, claim.version)
    if row is not None and row.status == VersionStatus.BUILDING:
        row.status, row.status_message, row.finished_at = VersionStatus.FAILED, STOPPED, utcnow()
    _clear_running(state)


def fail_training(
    session: Session, *, claim: TrainingClaim, message: str, clear_current: bool = False
) -> None:
    """Mark the claimed version failed. The requests it covered count as handled (no retry loop on a
    deterministic failure; the next change triggers a new training). The current version stays, unless
    ``clear_current`` (nobody is left to recognise)."""
    state = _state(session, lock=True)
    if not _owned(state, claim):
        return
    _fail_version(session, state, claim.version, message)
    state.built = max(state.built, claim.target)
    if clear_current:
        state.current_version = None
    _clear_running(state)


PRUNED_MESSAGE = "pruned by the retention policy (FACEFORGE_WORKER__KEEP_VERSIONS); its files are deleted"


UNUSABLE_MESSAGE = (
    "pruned by the retention policy (FACEFORGE_WORKER__KEEP_VERSIONS), before the versions that could "
    "still be made current: it names people deleted or merged since; its files are deleted"
)


def ready_versions(session: Session) -> list[int]:
    """The ready versions, newest first."""
    query = select(ModelVersionRow.version).where(ModelVersionRow.status == VersionStatus.READY)
    return list(session.scalars(query.order_by(ModelVersionRow.version.desc())))


def prune_versions(session: Session, *, keep: int, unusable: frozenset[int] = frozenset()) -> list[int]:
    """Mark every ready version except the current one and the newest ``keep`` as pruned, those of
    ``unusable`` (naming people deleted since) counted after every other: they cannot be made current
    again and their files are not served, yet they took the places kept for rolling back, and a
    tester found the one version still usable pruned behind them.

    Returns those versions plus failed ones, whose directories (if any) the caller deletes after
    commit: rows first, so nothing is offered for download while its files go.
    """
    current = _state(session, lock=True).current_version
    ready = list(
        session.scalars(
            select(ModelVersionRow)
            .where(ModelVersionRow.status == VersionStatus.READY)
            .order_by(ModelVersionRow.version.desc())
        )
    )
    ranked = sorted(ready, key=lambda row: row.version in unusable)  # stable: newest first within each
    pruned = [row for row in ranked[keep:] if row.version != current]
    for row in pruned:
        message = UNUSABLE_MESSAGE if row.version in unusable else PRUNED_MESSAGE
        row.status, row.status_message = VersionStatus.PRUNED, message
    failed = session.scalars(
        select(ModelVersionRow.version).where(ModelVersionRow.status == VersionStatus.FAILED)
    )
    return sorted({row.version for row in pruned} | set(failed))


def list_versions(
    session: Session, *, offset: int = 0, limit: int | None = None, status: VersionStatus | None = None
) -> tuple[list[ModelVersion], int]:
    """Versions newest first (``limit`` of them from ``offset``; only those with ``status``), and
    how many there are in all."""
    current = _state(session, lock=False).current_version
    query = select(ModelVersionRow)
    if status is not None:
        query = query.where(ModelVersionRow.status == status.value)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(ModelVersionRow.version.desc()).offset(offset).limit(limit))
    return [_version(row, current) for row in rows], total


def get_version(session: Session, *, version: int) -> ModelVersion:
    row = session.get(ModelVersionRow, version)
    if row is None:
        raise NotFoundError(f"model version {version} not found")
    return _version(row, _state(session, lock=False).current_version)


def current_version(session: Session, *, lock: bool = False) -> int | None:
    """``lock``: hold the state row until the transaction ends, so the version read stays current
    while the transaction decides on it (READ COMMITTED lets another one change it in between)."""
    return _state(session, lock=lock).current_version


def activate_version(session: Session, *, version: int) -> ModelVersion:
    """Make a ready version current. The state row is locked before the version is read: pruning
    marks versions under the same lock, so the status read here is the one that stays (read first,
    a version pruned meanwhile would become current with its files deleted)."""
    state = _state(session, lock=True)
    row = session.get(ModelVersionRow, version, populate_existing=True)
    if row is None:
        raise NotFoundError(f"model version {version} not found")
    if row.status != VersionStatus.READY:
        raise ConflictError(f"model version {version} is {row.status}, only ready versions can be activated")
    state.current_version = version
    return _version(row, version)


def training_outcomes(session: Session) -> dict[str, tuple[int, float]]:
    """Finished trainings by outcome (``ready``, which includes versions pruned since, or ``failed``):
    how many, and their total seconds from claim to outcome."""
    created, finished = ModelVersionRow.created_at, ModelVersionRow.finished_at
    if session.get_bind().dialect.name == "sqlite":
        seconds = (func.julianday(finished) - func.julianday(created)) * 86400.0
    else:
        seconds = func.extract("epoch", finished - created)
    rows = session.execute(
        select(ModelVersionRow.status, func.count(), func.coalesce(func.sum(seconds), 0.0))
        .where(finished.is_not(None))
        .group_by(ModelVersionRow.status)
    ).all()
    outcomes: dict[str, tuple[int, float]] = {}
    for status, count, total in rows:
        outcome = "failed" if status == VersionStatus.FAILED else "ready"
        known_count, known_total = outcomes.get(outcome, (0, 0.0))
        outcomes[outcome] = (known_count + int(count), known_total + float(total))
    return outcomes
