"""response ladders: the rung each identity reached per playbook

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clampdown.store.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ladders",
        sa.Column("playbook", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("offenses", sa.Integer(), nullable=False),
        sa.Column("last_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("playbook", "key"),
    )


def downgrade() -> None:
    op.drop_table("ladders")
