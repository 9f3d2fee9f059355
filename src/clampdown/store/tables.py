"""The database schema. Migrations in `migrations/` create exactly these tables."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite keeps AUTOINCREMENT keys as INTEGER; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite has no time zones: keep UTC wall time so that text comparison orders correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UtcDateTime}


def table(model: type[Base]) -> Table:
    """The Core table of a mapped class, typed for insert/update/delete statements."""
    result = model.__table__
    assert isinstance(result, Table)
    return result


@cache
def insert_new(target: Table, unique: tuple[str, ...], dialect: str) -> Any:
    """INSERT ... ON CONFLICT (unique) DO NOTHING RETURNING id, built once per table and backend.

    Executing it returns the new row's id, or nothing when the row already existed.
    """
    dialect_insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        dialect_insert(target)
        .on_conflict_do_nothing(index_elements=list(unique))
        .returning(target.c[next(iter(target.primary_key)).name])
    )


class FindingRow(Base):
    """One stored finding; (source, source_id) is unique."""

    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(200))
    source_id: Mapped[str] = mapped_column(String(1000))
    shape: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))
    type: Mapped[str] = mapped_column(String(200), index=True)
    severity: Mapped[str] = mapped_column(String(20))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(index=True)
    data: Mapped[dict[str, Any]]
    __table_args__ = (Index("ux_findings_source", "source", "source_id", unique=True),)


class RemediationRow(Base):
    """One run of one playbook for one finding or a group of correlated findings."""

    __tablename__ = "remediations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    playbook: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(30))
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id"))
    group_key: Mapped[str] = mapped_column(String(1000))
    group_until: Mapped[datetime | None]
    finding_count: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    __table_args__ = (
        Index("ix_remediations_group", "playbook", "group_key"),
        # Counting by playbook and state (metrics) reads only this index.
        Index("ix_remediations_playbook_state", "playbook", "state"),
        # Newest first within one state or one playbook without sorting all of its rows
        # (console lists); they also serve every look-up by state or by playbook alone.
        Index("ix_remediations_state_created", "state", "created_at"),
        Index("ix_remediations_playbook_created", "playbook", "created_at"),
    )


class RemediationFindingRow(Base):
    """Which findings a remediation covers (the first, and repeats grouped into it)."""

    __tablename__ = "remediation_findings"
    remediation_id: Mapped[str] = mapped_column(ForeignKey("remediations.id"), primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id"), primary_key=True)
    added_at: Mapped[datetime]
    # The remediations of a finding, when its detector reports it fixed or dismissed.
    __table_args__ = (Index("ix_remediation_findings_finding", "finding_id"),)


class StepRow(Base):
    """One action call of a remediation, with its definition frozen at planning time."""

    __tablename__ = "steps"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    remediation_id: Mapped[str] = mapped_column(ForeignKey("remediations.id"))
    key: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    expires_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    __table_args__ = (Index("ux_steps_remediation_key", "remediation_id", "key", unique=True),)


class HistoryRow(Base):
    """One recorded transition of a remediation or one of its steps: when, why, by whom."""

    __tablename__ = "history"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    remediation_id: Mapped[str] = mapped_column(ForeignKey("remediations.id"), index=True)
    step_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    at: Mapped[datetime]
    from_state: Mapped[str | None] = mapped_column(String(30), nullable=True)
    to_state: Mapped[str] = mapped_column(String(30))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))


class JobRow(Base):
    """Durable work for the engine: run a step, undo a step on expiry."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    remediation_id: Mapped[str] = mapped_column(ForeignKey("remediations.id"))
    step_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    due_at: Mapped[datetime] = mapped_column(index=True)
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]


class ContainmentRow(Base):
    """An enforcement decision of the built-in list."""

    __tablename__ = "containments"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    target: Mapped[str] = mapped_column(String(100), server_default="builtin", index=True)
    kind: Mapped[str] = mapped_column(String(20))
    subject_type: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(1000))
    scope: Mapped[str] = mapped_column(String(1000))
    rate: Mapped[int | None]
    period_seconds: Mapped[int | None]
    reason: Mapped[str] = mapped_column(Text)
    remediation_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    removed_at: Mapped[datetime | None] = mapped_column(index=True)
    removed_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class ContainmentEventRow(Base):
    """The change stream of the built-in list: its `seq` is the cursor gateways follow."""

    __tablename__ = "containment_events"
    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    containment_id: Mapped[str] = mapped_column(ForeignKey("containments.id"))
    op: Mapped[str] = mapped_column(String(10))
    at: Mapped[datetime]


class LadderRow(Base):
    """How far up a playbook's response ladder one identity (IP, key, user...) has climbed."""

    __tablename__ = "ladders"
    playbook: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(500), primary_key=True)
    level: Mapped[int] = mapped_column(Integer)
    offenses: Mapped[int] = mapped_column(Integer)
    last_at: Mapped[datetime]


class MemoRow(Base):
    """What an action noted before taking effect, kept per step across its attempts."""

    __tablename__ = "step_memos"
    idempotency_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime]


class TaskRow(Base):
    """A guided remediation task a person completes."""

    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    remediation_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    step_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    title: Mapped[str] = mapped_column(Text)
    why: Mapped[str] = mapped_column(Text)
    steps: Mapped[list[Any]]
    links: Mapped[list[Any]]
    evidence: Mapped[list[Any]]
    owner: Mapped[str] = mapped_column(String(300))
    due_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    completed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    steps_done: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    """Checklist ticks: [{"step": index into `steps`, "by": actor, "at": ISO time}, ...]."""


class DecisionTallyRow(Base):
    """Decisions answered in one hour for one API (as gateways name it), by verdict."""

    __tablename__ = "decision_tallies"
    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    api: Mapped[str] = mapped_column(String(300), primary_key=True)
    allowed: Mapped[int] = mapped_column(BigInteger)
    denied: Mapped[int] = mapped_column(BigInteger)
    throttled: Mapped[int] = mapped_column(BigInteger)


class SourceStateRow(Base):
    """A configured source's checkpoint and health: how far it has pulled, how it went."""

    __tablename__ = "source_state"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    checkpoint: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[datetime | None]
    pulled: Mapped[int] = mapped_column(Integer, default=0)
    """Records the last successful pull read from the detector."""
    ingested_total: Mapped[int] = mapped_column(BigInteger, default=0)
    """Findings first stored from this source, over every pull."""
    errors_total: Mapped[int] = mapped_column(BigInteger, default=0)
    """Pulls that failed."""
