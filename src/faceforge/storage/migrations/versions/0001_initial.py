"""People, photos, training state and model versions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("external_id", sa.String(200), nullable=True, unique=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("position", sa.String(500), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "photos",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("person_id", sa.Integer, sa.ForeignKey("people.id", ondelete="CASCADE"), nullable=False),
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
    )
    op.create_index("ix_photos_person_id", "photos", ["person_id"])
    state = op.create_table(
        "training_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("requested", sa.Integer, nullable=False),
        sa.Column("built", sa.Integer, nullable=False),
        sa.Column("running_version", sa.Integer, nullable=True),
        sa.Column("running_target", sa.Integer, nullable=True),
        sa.Column("worker_id", sa.String(100), nullable=True),
        sa.Column("heartbeat_at", TZ, nullable=True),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("stage", sa.String(50), nullable=True),
        sa.Column("current_version", sa.Integer, nullable=True),
        sa.Column("last_success_version", sa.Integer, nullable=True),
        sa.Column("last_success_at", TZ, nullable=True),
        sa.Column("last_failure_version", sa.Integer, nullable=True),
        sa.Column("last_failure_at", TZ, nullable=True),
        sa.Column("last_failure_message", sa.Text, nullable=True),
    )
    op.bulk_insert(state, [{"id": 1, "requested": 0, "built": 0, "progress": 0.0}])
    op.create_table(
        "model_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_message", sa.Text, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("target", sa.Integer, nullable=False),
        sa.Column("worker_id", sa.String(100), nullable=True),
        sa.Column("embedder", sa.String(100), nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("people", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("files", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    for table in ("model_versions", "training_state", "photos", "people"):
        op.drop_table(table)
