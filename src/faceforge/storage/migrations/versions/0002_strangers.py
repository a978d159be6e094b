"""Strangers and their photos: faces that must never be named, kept apart from people.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "strangers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("source", sa.String(200), nullable=True, unique=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "stranger_photos",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "stranger_id", sa.Integer, sa.ForeignKey("strangers.id", ondelete="CASCADE"), nullable=False
        ),
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
    op.create_index("ix_stranger_photos_stranger_id", "stranger_photos", ["stranger_id"])


def downgrade() -> None:
    op.drop_table("stranger_photos")
    op.drop_table("strangers")
