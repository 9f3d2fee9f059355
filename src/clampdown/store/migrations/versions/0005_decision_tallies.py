"""decision tallies per hour and API; remediations counted by playbook and state

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clampdown.store.tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decision_tallies",
        sa.Column(
            "bucket_start", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("api", sa.String(length=300), nullable=False),
        sa.Column("allowed", sa.BigInteger(), nullable=False),
        sa.Column("denied", sa.BigInteger(), nullable=False),
        sa.Column("throttled", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket_start", "api"),
    )
    with op.batch_alter_table("remediations", schema=None) as batch_op:
        batch_op.create_index("ix_remediations_playbook_state", ["playbook", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("remediations", schema=None) as batch_op:
        batch_op.drop_index("ix_remediations_playbook_state")
    op.drop_table("decision_tallies")
