"""Ids of people, strangers and their photos are never given again (SQLite AUTOINCREMENT).

Without AUTOINCREMENT SQLite hands out the largest id in use plus one, so deleting the newest person
gave their id to the next one: a version's labels (which name people by id) then named the wrong
person, and a retried DELETE removed someone else. PostgreSQL's sequences never go back; nothing to do
there.

SQLite can only add AUTOINCREMENT by creating a table anew. Dropping ``people`` while photos still
point at it would delete every photo (the foreign key cascades, and the pragma that turns foreign keys
off cannot change inside the migration's transaction), so parent and child are copied first, the child
dropped before its parent, and the copies renamed (which also renames the child's reference). Each
sequence starts above the largest id in use; people's also above every person id a model version
names (ids deleted before this upgrade are otherwise unknown).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

TZ = sa.DateTime(timezone=True)


def _people(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("external_id", sa.String(200), nullable=True, unique=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("position", sa.String(500), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sqlite_autoincrement=True,
    )


def _strangers(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("source", sa.String(200), nullable=True, unique=True),
        sa.Column("created_at", TZ, nullable=False),
        sqlite_autoincrement=True,
    )


def _photos(metadata: sa.MetaData, name: str, owner: str, parent: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(owner, sa.Integer, sa.ForeignKey(f"{parent}.id", ondelete="CASCADE"), nullable=False),
        sa.Column("stored_name", sa.String(100), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(50), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("box", sa.JSON, nullable=False),
        sa.Column("landmarks", sa.JSON, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("embedder", sa.String(100), nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sqlite_autoincrement=True,
    )


def _highest_person_id_named_by_versions(connection: sa.Connection) -> int:
    highest = 0
    versions = sa.table("model_versions", sa.column("people", sa.JSON))
    for (people,) in connection.execute(sa.select(versions.c.people)):
        for entry in people or []:
            if isinstance(entry, dict) and isinstance(entry.get("id"), int):
                highest = max(highest, entry["id"])
    return highest


def _recreate(
    connection: sa.Connection,
    parent: tuple[str, Callable[[sa.MetaData, str], sa.Table]],
    child: tuple[str, str, str],
    parent_floor: int,
) -> None:
    """Recreate ``parent`` and its photos table ``child`` (name, owner column, index) with
    AUTOINCREMENT, keeping every row and id."""
    (parent_name, make_parent), (child_name, owner, index) = parent, child
    metadata = sa.MetaData()
    new_parent = make_parent(metadata, f"{parent_name}_new")
    new_child = _photos(metadata, f"{child_name}_new", owner, new_parent.name)
    new_parent.create(connection)
    new_child.create(connection)
    for old, new in ((parent_name, new_parent), (child_name, new_child)):
        columns = ", ".join(column.name for column in new.columns)
        connection.execute(sa.text(f"INSERT INTO {new.name} ({columns}) SELECT {columns} FROM {old}"))
    op.drop_index(index, child_name)
    op.drop_table(child_name)
    op.drop_table(parent_name)  # nothing refers to it any more: no cascade
    op.rename_table(new_parent.name, parent_name)
    op.rename_table(new_child.name, child_name)
    op.create_index(index, child_name, [owner])
    for table, floor in ((parent_name, parent_floor), (child_name, 0)):
        highest = connection.execute(sa.text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar_one()
        connection.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
        connection.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :seq)"),
            {"t": table, "seq": max(int(highest), floor)},
        )


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "sqlite":
        return
    named = _highest_person_id_named_by_versions(connection)
    _recreate(connection, ("people", _people), ("photos", "person_id", "ix_photos_person_id"), named)
    _recreate(
        connection,
        ("strangers", _strangers),
        ("stranger_photos", "stranger_id", "ix_stranger_photos_stranger_id"),
        0,
    )


def downgrade() -> None:
    # Giving ids again is the defect this revision removes; there is no going back to it.
    raise NotImplementedError("revision 0003 cannot be undone")
