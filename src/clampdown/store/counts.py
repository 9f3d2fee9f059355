"""Counts for the metrics scrape: each one query that reads an index (or few rows).

They run on every Prometheus scrape, with 100,000s of findings and remediations stored, so
none reads whole tables: active containments from the `removed_at` index, open tasks from the
`status` index, and the oldest pending approval from the `state` index and each waiting
remediation's history. Remediations by playbook and state come from `summaries`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, func, or_, select

from clampdown.model import RemediationState
from clampdown.store.tables import (
    ContainmentRow,
    HistoryRow,
    RemediationRow,
    TaskRow,
    table,
)

_rem = table(RemediationRow)
_hist = table(HistoryRow)
_con = table(ContainmentRow)
_task = table(TaskRow)
_AWAITING = RemediationState.AWAITING_APPROVAL.value


def oldest_approval_wait_since(conn: Connection) -> datetime | None:
    """When the remediation waiting longest for approval started to wait (None: none waits).

    A remediation starts to wait when it enters `awaiting_approval` (at planning, or when a
    safety rail pauses it); votes and joining repeats, recorded as transitions from that
    state to itself, do not restart the wait.
    """
    entered = (
        select(func.max(_hist.c.at).label("at"))
        .select_from(_rem.join(_hist, _hist.c.remediation_id == _rem.c.id))
        .where(
            _rem.c.state == _AWAITING,
            _hist.c.step_key.is_(None),
            _hist.c.to_state == _AWAITING,
            or_(_hist.c.from_state.is_(None), _hist.c.from_state != _AWAITING),
        )
        .group_by(_rem.c.id)
        .subquery()
    )
    oldest: datetime | None = conn.execute(select(func.min(entered.c.at))).scalar()
    return oldest


def active_containments(conn: Connection, *, now: datetime) -> list[tuple[str, str, int]]:
    """(target, kind, how many) of containments in force: not lifted and not past expiry."""
    stmt = (
        select(_con.c.target, _con.c.kind, func.count())
        .where(
            _con.c.removed_at.is_(None),
            or_(_con.c.expires_at.is_(None), _con.c.expires_at > now),
        )
        .group_by(_con.c.target, _con.c.kind)
    )
    return [(target, kind, int(n)) for target, kind, n in conn.execute(stmt)]


def open_tasks(conn: Connection) -> int:
    """How many guided tasks wait for a person."""
    stmt = select(func.count()).select_from(_task).where(_task.c.status == "open")
    return int(conn.execute(stmt).scalar_one())
