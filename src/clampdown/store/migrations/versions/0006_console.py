"""console: checklist ticks on tasks; remediations indexed by state and by playbook in time order

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("steps_done", sa.JSON(), nullable=True))
    # (state, created_at) and (playbook, created_at) replace the one-column indexes: they
    # serve the same look-ups, and also "newest first" within a state or a playbook.
    with op.batch_alter_table("remediations", schema=None) as batch_op:
        batch_op.drop_index("ix_remediations_state")
        batch_op.drop_index("ix_remediations_playbook")
        batch_op.create_index(
            "ix_remediations_state_created", ["state", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_remediations_playbook_created", ["playbook", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("remediations", schema=None) as batch_op:
        batch_op.drop_index("ix_remediations_playbook_created")
        batch_op.drop_index("ix_remediations_state_created")
        batch_op.create_index("ix_remediations_playbook", ["playbook"], unique=False)
        batch_op.create_index("ix_remediations_state", ["state"], unique=False)
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("steps_done")
