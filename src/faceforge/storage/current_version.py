"""Making a version current, in one place.

The database's state row says which version is current; the home's ``models/CURRENT`` pointer only
tells every process sharing the home that it may have changed (``VersionStore.mark_current``).
``make_current`` runs the caller's change of the state row in one write transaction and then rewrites
the pointer with what the row says once that change is committed. Publishing a trained version (the
worker), activating one (an admin) and clearing it (nobody left to recognise) all go through it, so
the pointer never names a version the database does not hold current (a version held back at
publication stays out of it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from faceforge.storage import training_store
from faceforge.storage.version_store import VersionStore

T = TypeVar("T")


def make_current(sessions: sessionmaker[Session], store: VersionStore, change: Callable[[Session], T]) -> T:
    """Run ``change(session)`` (which sets, keeps or clears the current version) in one write
    transaction, then point ``store``'s ``CURRENT`` at the version current after it; ``change``'s
    result is returned. If ``change`` raises, nothing is committed and the pointer is left alone."""
    with sessions.begin() as session:
        result = change(session)
        current = training_store.current_version(session)
    store.mark_current(current)
    return result
