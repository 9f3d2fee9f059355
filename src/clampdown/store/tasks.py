"""Guided remediation tasks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from clampdown.store.tables import TaskRow, table

_t = table(TaskRow)


def create(conn: Connection, values: dict[str, Any], *, now: datetime) -> tuple[str, bool]:
    """Open a task unless one with the same key exists; returns (id, inserted)."""
    existing = conn.execute(select(_t.c.id).where(_t.c.key == values["key"])).scalar()
    if existing is not None:
        return str(existing), False
    tid = uuid.uuid4().hex
    conn.execute(insert(_t).values(id=tid, created_at=now, status="open", **values))
    return tid, True


def get(conn: Connection, task_id: str) -> dict[str, Any] | None:
    """One task."""
    row = conn.execute(select(_t).where(_t.c.id == task_id)).first()
    return dict(row._mapping) if row else None


def list_by_status(conn: Connection, status: str | None, *, limit: int) -> list[dict[str, Any]]:
    """Newest first, optionally only `status` (open or done)."""
    stmt = select(_t).order_by(_t.c.created_at.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(_t.c.status == status)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def open_of(conn: Connection, remediation_id: str) -> list[dict[str, Any]]:
    """The open tasks of a remediation, oldest first."""
    stmt = (
        select(_t)
        .where(_t.c.remediation_id == remediation_id, _t.c.status == "open")
        .order_by(_t.c.created_at)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def complete(conn: Connection, task_id: str, *, by: str, note: str, now: datetime) -> bool:
    """Mark an open task done; False when it was not open."""
    return bool(
        conn.execute(
            update(_t)
            .where(_t.c.id == task_id, _t.c.status == "open")
            .values(status="done", completed_at=now, completed_by=by, note=note)
        ).rowcount
    )


def set_step_done(
    conn: Connection, task_id: str, index: int, *, done: bool, by: str, now: datetime
) -> dict[str, Any] | None:
    """Tick (or untick) checklist item `index` of a task; returns the task, None if unknown.

    The caller checks that the task is open and the index exists. On PostgreSQL the row is
    locked first, so that two people ticking at once both keep their tick.
    """
    stmt = select(_t.c.steps_done).where(_t.c.id == task_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        return None
    ticks = [t for t in (row.steps_done or []) if t.get("step") != index]
    if done:
        ticks.append({"step": index, "by": by, "at": now.isoformat()})
    ticks.sort(key=lambda t: int(t["step"]))
    conn.execute(update(_t).where(_t.c.id == task_id).values(steps_done=ticks or None))
    return get(conn, task_id)
