"""The durable job queue: due work is claimed with a lease, so a crashed worker's jobs come back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, func, insert, or_, select, update

from clampdown.store.tables import JobRow, table

_t = table(JobRow)
_INSERT = insert(_t)
_INSERT_RETURNING = insert(_t).returning(_t.c.id)
_DELETE = delete(_t).where(_t.c.id == bindparam("b_id"))
_RETRY = (
    update(_t)
    .where(_t.c.id == bindparam("b_id"))
    .values(
        due_at=bindparam("b_due"),
        lease_until=None,
        lease_owner=None,
        attempts=_t.c.attempts + bindparam("b_more"),
    )
)
_DUE = (
    select(_t.c.id, _t.c.kind, _t.c.remediation_id, _t.c.step_key, _t.c.due_at, _t.c.attempts)
    .where(
        _t.c.due_at <= bindparam("b_now"),
        or_(_t.c.lease_until.is_(None), _t.c.lease_until < bindparam("b_now")),
    )
    .order_by(_t.c.due_at, _t.c.id)
    .limit(bindparam("b_limit"))
)
_DUE_LOCKED = _DUE.with_for_update(skip_locked=True)
_LEASE = (
    update(_t)
    .where(_t.c.id.in_(bindparam("b_ids", expanding=True)))
    .values(lease_until=bindparam("b_until"), lease_owner=bindparam("b_owner"))
)
_HOLD = (
    update(_t)
    .where(_t.c.id == bindparam("b_id"), _t.c.lease_owner == bindparam("b_owner"))
    .values(lease_until=bindparam("b_until"))
)


@dataclass
class Job:
    """A claimed job, and until when this worker holds it."""

    id: int
    kind: str
    remediation_id: str
    step_key: str | None
    due_at: datetime
    attempts: int
    lease_until: datetime
    owner: str


def enqueue(
    conn: Connection,
    kind: str,
    remediation_id: str,
    step_key: str | None,
    *,
    due_at: datetime,
    now: datetime,
    lease: tuple[str, datetime] | None = None,
) -> Job | None:
    """Add a job that becomes due at `due_at`.

    With `lease` (owner, until), the job is created already held by that worker, which is
    handed the returned Job instead of claiming it.
    """
    owner, until = lease if lease is not None else (None, None)
    values = {
        "kind": kind,
        "remediation_id": remediation_id,
        "step_key": step_key,
        "due_at": due_at,
        "created_at": now,
        "lease_until": until,
        "lease_owner": owner,
        "attempts": 0,
    }
    if until is None:
        conn.execute(_INSERT, values)
        return None
    job_id = conn.execute(_INSERT_RETURNING, values).scalar_one()
    assert owner is not None
    return Job(int(job_id), kind, remediation_id, step_key, due_at, 0, until, owner)


def claim(
    conn: Connection, *, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[Job]:
    """Take up to `limit` due jobs whose lease is free or lapsed (a crashed worker's)."""
    stmt = _DUE_LOCKED if conn.dialect.name == "postgresql" else _DUE
    rows = conn.execute(stmt, {"b_now": now, "b_limit": limit}).all()
    if not rows:
        return []
    until = now + lease
    conn.execute(_LEASE, {"b_ids": [r.id for r in rows], "b_until": until, "b_owner": owner})
    return [
        Job(r.id, r.kind, r.remediation_id, r.step_key, r.due_at, r.attempts, until, owner)
        for r in rows
    ]


def finish(conn: Connection, job_id: int) -> None:
    """The job is done: remove it."""
    conn.execute(_DELETE, {"b_id": job_id})


def retry_at(conn: Connection, job_id: int, due_at: datetime, *, attempt: bool = False) -> None:
    """Release the job and make it due again at `due_at` (counting an attempt if asked)."""
    conn.execute(_RETRY, {"b_id": job_id, "b_due": due_at, "b_more": int(attempt)})


def hold(conn: Connection, job: Job, until: datetime) -> bool:
    """Extend the job's lease if this worker still holds it; False when another took it over."""
    held = conn.execute(_HOLD, {"b_id": job.id, "b_owner": job.owner, "b_until": until}).rowcount
    if held:
        job.lease_until = until
    return bool(held)


def release_dead(conn: Connection, is_dead: Callable[[str], bool]) -> int:
    """Free the leases of workers known to be gone, so their jobs run now, not at lease end."""
    owners = conn.execute(
        select(_t.c.lease_owner).where(_t.c.lease_owner.is_not(None)).distinct()
    ).scalars()
    dead = [o for o in owners if is_dead(o)]
    if not dead:
        return 0
    return int(
        conn.execute(
            update(_t).where(_t.c.lease_owner.in_(dead)).values(lease_until=None, lease_owner=None)
        ).rowcount
    )


def in_flight(
    conn: Connection, remediation_id: str, kinds: tuple[str, ...], *, now: datetime
) -> bool:
    """Whether a worker holds a job of `kinds` for the remediation right now.

    On PostgreSQL the remediation's jobs of those kinds are locked until the transaction
    ends, so a worker cannot claim one between this answer and the caller's commit.
    """
    stmt = select(_t.c.lease_until).where(
        _t.c.remediation_id == remediation_id, _t.c.kind.in_(kinds)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return any(until is not None and until > now for until in conn.execute(stmt).scalars())


def due_count(conn: Connection, now: datetime) -> int:
    """How many jobs are due now (running or waiting for a worker)."""
    stmt = select(func.count()).select_from(_t).where(_t.c.due_at <= now)
    return int(conn.execute(stmt).scalar_one())


def pending_count(conn: Connection, *, exclude_kind: str | None = None) -> int:
    """How many jobs are waiting or running (optionally not counting one kind)."""
    stmt = select(func.count()).select_from(_t)
    if exclude_kind is not None:
        stmt = stmt.where(_t.c.kind != exclude_kind)
    return int(conn.execute(stmt).scalar_one())


def reschedule(
    conn: Connection, kind: str, remediation_id: str, step_key: str, *, due_at: datetime
) -> int:
    """Move the due time of a step's jobs of one kind; returns how many were moved."""
    stmt = (
        update(_t)
        .where(
            _t.c.kind == kind,
            _t.c.remediation_id == remediation_id,
            _t.c.step_key == step_key,
        )
        .values(due_at=due_at)
    )
    return int(conn.execute(stmt).rowcount)


def exists(conn: Connection, kind: str, remediation_id: str, step_key: str) -> bool:
    """Whether a job of `kind` is waiting or running for one step."""
    stmt = select(_t.c.id).where(
        _t.c.kind == kind, _t.c.remediation_id == remediation_id, _t.c.step_key == step_key
    )
    return conn.execute(stmt.limit(1)).first() is not None
