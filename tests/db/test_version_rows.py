"""A version's row says what only the database knows (that it exists, its status, times, the training
that made it); what the version holds is in its manifest alone. An existing database loses the
copies it kept and keeps its versions, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

from faceforge.core.records import VersionStatus
from faceforge.storage import training_store
from faceforge.storage.engine import MIGRATIONS, make_engine, make_sessionmaker, upgrade_database
from faceforge.storage.tables import ModelVersionRow
from tests.api.fixtures import BOTH_DATABASES

THE_DATABASES_OWN = {
    "version",
    "status",
    "status_message",
    "created_at",
    "finished_at",
    "target",
    "worker_id",
    "embedder",
}


@BOTH_DATABASES
def test_a_version_row_holds_no_copy_of_its_manifest(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade_database(engine)
        columns = {column["name"] for column in inspect(engine).get_columns("model_versions")}
    finally:
        engine.dispose()
    assert columns == THE_DATABASES_OWN
    assert set(ModelVersionRow.__table__.columns.keys()) == THE_DATABASES_OWN


@BOTH_DATABASES
def test_upgrading_drops_the_copies_and_keeps_every_version(database_url: str) -> None:
    engine = make_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:  # a database of the release before
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")
            for version, status in ((1, "ready"), (2, "failed")):
                connection.execute(
                    text(
                        "INSERT INTO model_versions (version, status, status_message, created_at, "
                        "finished_at, target, worker_id, embedder, threshold, people, metrics, files) "
                        "VALUES (:version, :status, 'said', '2026-01-01 00:00:00+00', "
                        "'2026-01-01 00:01:00+00', :version, 'w', 'facenet', 0.8, :people, '{}', '{}')"
                    ),
                    {"version": version, "status": status, "people": json.dumps([{"id": 1, "name": "A"}])},
                )
            connection.execute(text("UPDATE training_state SET current_version = 1 WHERE id = 1"))

        upgrade_database(engine)

        assert {
            column["name"] for column in inspect(engine).get_columns("model_versions")
        } == THE_DATABASES_OWN
        with make_sessionmaker(engine)() as session:
            versions, total = training_store.list_versions(session)
        assert [(v.version, v.status, v.status_message, v.embedder, v.is_current) for v in versions] == [
            (2, VersionStatus.FAILED, "said", "facenet", False),
            (1, VersionStatus.READY, "said", "facenet", True),
        ]
        assert total == 2
        assert versions[1].created_at.year == 2026 and versions[1].finished_at is not None
    finally:
        engine.dispose()
