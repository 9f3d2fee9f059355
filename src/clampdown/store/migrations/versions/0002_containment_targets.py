"""containments name the target that enforces them

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("containments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("target", sa.String(length=100), server_default="builtin", nullable=False)
        )
        batch_op.create_index(batch_op.f("ix_containments_target"), ["target"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("containments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_containments_target"))
        batch_op.drop_column("target")
