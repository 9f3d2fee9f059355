"""source state: checkpoint and health of each configured source

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clampdown.store.tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    utc = clampdown.store.tables.UtcDateTime(timezone=True)
    op.create_table(
        "source_state",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("checkpoint", utc, nullable=True),
        sa.Column("last_attempt_at", utc, nullable=True),
        sa.Column("last_success_at", utc, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", utc, nullable=True),
        sa.Column("pulled", sa.Integer(), nullable=False),
        sa.Column("ingested_total", sa.BigInteger(), nullable=False),
        sa.Column("errors_total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("source_state")
