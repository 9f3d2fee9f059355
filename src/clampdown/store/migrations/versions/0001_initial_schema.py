"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clampdown.store.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "containments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("subject_type", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=1000), nullable=False),
        sa.Column("scope", sa.String(length=1000), nullable=False),
        sa.Column("rate", sa.Integer(), nullable=True),
        sa.Column("period_seconds", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("remediation_id", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("removed_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("removed_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("containments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_containments_remediation_id"), ["remediation_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_containments_removed_at"), ["removed_at"], unique=False
        )

    op.create_table(
        "findings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("source_id", sa.String(length=1000), nullable=False),
        sa.Column("shape", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("received_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_findings_fingerprint"), ["fingerprint"], unique=False)
        batch_op.create_index(batch_op.f("ix_findings_received_at"), ["received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_findings_type"), ["type"], unique=False)
        batch_op.create_index("ux_findings_source", ["source", "source_id"], unique=True)

    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("remediation_id", sa.String(length=32), nullable=True),
        sa.Column("step_key", sa.String(length=100), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("links", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(length=300), nullable=False),
        sa.Column("due_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("completed_by", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tasks_remediation_id"), ["remediation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_tasks_status"), ["status"], unique=False)

    op.create_table(
        "containment_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("containment_id", sa.String(length=32), nullable=False),
        sa.Column("op", sa.String(length=10), nullable=False),
        sa.Column("at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["containment_id"],
            ["containments.id"],
        ),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "remediations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("playbook", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=False),
        sa.Column(
            "finding_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("group_key", sa.String(length=1000), nullable=False),
        sa.Column("group_until", clampdown.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("finding_count", sa.Integer(), nullable=False),
        sa.Column("created_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["findings.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("remediations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_remediations_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index("ix_remediations_group", ["playbook", "group_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_remediations_playbook"), ["playbook"], unique=False)
        batch_op.create_index(batch_op.f("ix_remediations_state"), ["state"], unique=False)

    op.create_table(
        "history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("remediation_id", sa.String(length=32), nullable=False),
        sa.Column("step_key", sa.String(length=100), nullable=True),
        sa.Column("at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("from_state", sa.String(length=30), nullable=True),
        sa.Column("to_state", sa.String(length=30), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["remediation_id"],
            ["remediations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_history_remediation_id"), ["remediation_id"], unique=False
        )

    op.create_table(
        "jobs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("remediation_id", sa.String(length=32), nullable=False),
        sa.Column("step_key", sa.String(length=100), nullable=True),
        sa.Column("due_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("lease_until", clampdown.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["remediation_id"],
            ["remediations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_due_at"), ["due_at"], unique=False)

    op.create_table(
        "remediation_findings",
        sa.Column("remediation_id", sa.String(length=32), nullable=False),
        sa.Column(
            "finding_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("added_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["findings.id"],
        ),
        sa.ForeignKeyConstraint(
            ["remediation_id"],
            ["remediations.id"],
        ),
        sa.PrimaryKeyConstraint("remediation_id", "finding_id"),
    )
    op.create_table(
        "steps",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("remediation_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("expires_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("started_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", clampdown.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["remediation_id"],
            ["remediations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.create_index("ux_steps_remediation_key", ["remediation_id", "key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.drop_index("ux_steps_remediation_key")

    op.drop_table("steps")
    op.drop_table("remediation_findings")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_due_at"))

    op.drop_table("jobs")
    with op.batch_alter_table("history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_history_remediation_id"))

    op.drop_table("history")
    with op.batch_alter_table("remediations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_remediations_state"))
        batch_op.drop_index(batch_op.f("ix_remediations_playbook"))
        batch_op.drop_index("ix_remediations_group")
        batch_op.drop_index(batch_op.f("ix_remediations_created_at"))

    op.drop_table("remediations")
    op.drop_table("containment_events")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_status"))
        batch_op.drop_index(batch_op.f("ix_tasks_remediation_id"))

    op.drop_table("tasks")
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index("ux_findings_source")
        batch_op.drop_index(batch_op.f("ix_findings_type"))
        batch_op.drop_index(batch_op.f("ix_findings_received_at"))
        batch_op.drop_index(batch_op.f("ix_findings_fingerprint"))

    op.drop_table("findings")
    with op.batch_alter_table("containments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_containments_removed_at"))
        batch_op.drop_index(batch_op.f("ix_containments_remediation_id"))

    op.drop_table("containments")
