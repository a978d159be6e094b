"""Engine and sessions for SQLite (embedded default) and PostgreSQL, and migrations at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from faceforge.core.errors import DatabaseUnreachableError

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works: it only has to be the same in every process of a deployment.
MIGRATION_LOCK_KEY = 0x66616365
# Execution option of a connection that will write: on SQLite its transaction takes the write lock up front.
WRITES = "faceforge_writes"


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def make_engine(url: str) -> Engine:
    """Create the engine. SQLite gets WAL, foreign keys, a busy timeout, and transactions that take the
    write lock up front when they are meant to write (``WRITES``; ``sessions.begin()`` sets it)."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's BEGIN below, not pysqlite, start transactions.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            # SQLite's own lower() folds ASCII letters only, so a name search ("any case") missed
            # "Émile" typed as stored; Python's folds every letter, as PostgreSQL's does in UTF-8.
            dbapi_connection.create_function("lower", 1, _lower, deterministic=True)

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            # A writer takes the write lock up front (IMMEDIATE), so two processes claiming the training
            # row serialise instead of failing with "database is locked" on upgrade from a read. A reader
            # must not: under WAL it reads a snapshot and never waits for a writer (with IMMEDIATE a
            # plain GET queued behind every write for up to the busy timeout).
            writes = connection.get_execution_options().get(WRITES, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN DEFERRED")

        return engine
    # Read committed whatever the server's default: a writer that waited for a lock (a name's, a
    # photo's) must then read what the writer before it committed (``people_store.lock_photos``).
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=20, isolation_level="READ COMMITTED"
    )


class WritingSession(Session):
    """A session whose explicit ``begin()`` (``with sessions.begin() as session``) declares a write:
    its connection is taken at once with ``WRITES`` set. Sessions used without ``begin()`` only read
    (they autobegin a plain transaction and roll it back on close)."""

    def begin(self, nested: bool = False) -> SessionTransaction:
        transaction = super().begin(nested=nested)
        if not nested:
            self.connection(execution_options={WRITES: True})
        return transaction


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for ``engine``: ``with sessions() as s`` to read, ``with sessions.begin() as s`` to write."""
    return sessionmaker(engine, class_=WritingSession, expire_on_commit=False)


def _migrations() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrations_current(engine: Engine) -> bool:
    """Whether the database is at the newest migration (raises if the database cannot be reached)."""
    head = ScriptDirectory.from_config(_migrations()).get_current_head()
    with engine.connect() as connection:
        return bool(MigrationContext.configure(connection).get_current_revision() == head)


def upgrade_database(engine: Engine) -> None:
    """Apply every Alembic migration up to head; on PostgreSQL one process at a time (advisory lock)."""
    config = _migrations()
    try:
        connected = engine.connect()
    except OperationalError as error:
        # What a user mistyped or has not started: one line from the commands, not a traceback.
        reason = str(error.orig or error).strip().splitlines()[0]
        raise DatabaseUnreachableError(
            f"cannot reach the database {engine.url.render_as_string(hide_password=True)}: {reason}"
        ) from None
    with connected.execution_options(**{WRITES: True}) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def read_one_snapshot(session: Session) -> None:
    """Make the session's transaction read one snapshot of the database, whatever commits meanwhile:
    PostgreSQL's REPEATABLE READ (under its default READ COMMITTED each statement sees what others
    committed before it, so a person deleted between two reads of one training was in the photos
    and not in the people). SQLite's transactions under WAL already read one snapshot. Call it
    before the transaction's first statement."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
