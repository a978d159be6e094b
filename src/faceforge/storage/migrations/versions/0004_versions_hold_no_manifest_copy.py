"""A version's row holds no copy of its manifest: ``threshold``, ``people``, ``metrics`` and ``files``
go from ``model_versions``.

They were JSON copies of what the version's ``manifest.json`` holds, written at publication, and
readers mixed the two. The manifest (the contract with every app) is now the one place; the row keeps
what only the database knows: that the version exists, its status and message, its times, the
training that made it, and the embedder its training was claimed for. Nothing is lost: every ready
version's manifest holds the roster, threshold, metrics and file listing (all but the training's
duration, ``train_seconds``, which older releases kept in the row alone). Pruned versions' figures go
with their files.

SQLite drops the columns by copying the table (alembic's batch mode); nothing refers to it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"

COPIED = ("threshold", "people", "metrics", "files")


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as table:
        for column in COPIED:
            table.drop_column(column)


def downgrade() -> None:
    # The columns could come back only empty, and the release before this one reads each version's
    # roster and files from them: every version would look like one with nobody and nothing to serve.
    raise NotImplementedError("revision 0004 cannot be undone: the copies it dropped are not kept")
