"""step memos: what an action noted before it took effect

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clampdown.store.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "step_memos",
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("created_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", "name"),
    )


def downgrade() -> None:
    op.drop_table("step_memos")
