"""remediations looked up by finding (the detector's later reports act on them)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("remediation_findings", schema=None) as batch_op:
        batch_op.create_index("ix_remediation_findings_finding", ["finding_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("remediation_findings", schema=None) as batch_op:
        batch_op.drop_index("ix_remediation_findings_finding")
