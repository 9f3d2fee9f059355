"""Counts and short lists for overview pages: every query is limited and served by an index."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from clampdown.store.tables import (
    ContainmentRow,
    FindingRow,
    HistoryRow,
    RemediationRow,
    TaskRow,
    table,
)

_rem = table(RemediationRow)
_hist = table(HistoryRow)
_find = table(FindingRow)
_cont = table(ContainmentRow)
_task = table(TaskRow)


def count_by_state(conn: Connection, states: Iterable[str] | None = None) -> dict[str, int]:
    """How many remediations are in each state (only `states`, when given)."""
    stmt = select(_rem.c.state, func.count()).group_by(_rem.c.state)
    if states is not None:
        stmt = stmt.where(_rem.c.state.in_(sorted(states)))
    return {str(state): int(n) for state, n in conn.execute(stmt)}


def count_by_playbook_and_state(conn: Connection) -> dict[str, dict[str, int]]:
    """Remediation counts per playbook, per state."""
    stmt = select(_rem.c.playbook, _rem.c.state, func.count()).group_by(
        _rem.c.playbook, _rem.c.state
    )
    out: dict[str, dict[str, int]] = {}
    for playbook, state, n in conn.execute(stmt):
        out.setdefault(str(playbook), {})[str(state)] = int(n)
    return out


def in_states(
    conn: Connection, states: Iterable[str], *, limit: int, order_by_update: bool = False
) -> list[dict[str, Any]]:
    """Remediations in any of `states`, newest first (by creation, or by last change)."""
    key = _rem.c.updated_at if order_by_update else _rem.c.created_at
    stmt = (
        select(_rem)
        .where(_rem.c.state.in_(sorted(states)))
        .order_by(key.desc(), _rem.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def count_changed_since(conn: Connection, state: str, since: datetime) -> int:
    """Remediations in `state` whose last change is at or after `since`."""
    stmt = select(func.count()).where(_rem.c.state == state, _rem.c.updated_at >= since)
    return int(conn.execute(stmt).scalar_one())


def latest_of_playbook(conn: Connection, playbook: str, *, limit: int) -> list[dict[str, Any]]:
    """A playbook's newest remediations."""
    stmt = (
        select(_rem.c.id, _rem.c.state, _rem.c.created_at, _rem.c.updated_at)
        .where(_rem.c.playbook == playbook)
        .order_by(_rem.c.created_at.desc(), _rem.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def finding_heads(conn: Connection, finding_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Title, type and severity of a few findings, by id."""
    ids = sorted(set(finding_ids))
    if not ids:
        return {}
    stmt = select(_find.c.id, _find.c.title, _find.c.type, _find.c.severity).where(
        _find.c.id.in_(ids)
    )
    return {int(r.id): dict(r._mapping) for r in conn.execute(stmt)}


def active_containments(conn: Connection, *, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Containments in force (not lifted, not past their expiry), soonest expiry first."""
    stmt = (
        select(_cont)
        .where(
            _cont.c.removed_at.is_(None),
            (_cont.c.expires_at.is_(None)) | (_cont.c.expires_at > now),
        )
        .order_by(_cont.c.expires_at.is_(None), _cont.c.expires_at, _cont.c.created_at.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def count_active_containments(conn: Connection, *, now: datetime) -> int:
    """How many containments are in force."""
    stmt = select(func.count()).where(
        _cont.c.removed_at.is_(None),
        (_cont.c.expires_at.is_(None)) | (_cont.c.expires_at > now),
    )
    return int(conn.execute(stmt).scalar_one())


def count_tasks(conn: Connection, status: str) -> int:
    """How many guided tasks have `status` (open or done)."""
    return int(conn.execute(select(func.count()).where(_task.c.status == status)).scalar_one())


def count_findings_since(conn: Connection, since: datetime) -> int:
    """How many findings were received at or after `since`."""
    stmt = select(func.count()).where(_find.c.received_at >= since)
    return int(conn.execute(stmt).scalar_one())


def listing(
    conn: Connection,
    *,
    states: list[str] | None = None,
    playbook: str | None = None,
    before: str | None = None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest remediations first, of some states and one playbook; `before` is the id of the
    last row of the previous page (an unknown id starts from the newest)."""
    stmt = select(_rem).order_by(_rem.c.created_at.desc(), _rem.c.id.desc())
    if states:
        only = _rem.c.state == states[0] if len(states) == 1 else _rem.c.state.in_(states)
        stmt = stmt.where(only)
    if playbook is not None:
        stmt = stmt.where(_rem.c.playbook == playbook)
    if before is not None:
        anchor = conn.execute(select(_rem.c.created_at).where(_rem.c.id == before)).scalar()
        if anchor is not None:
            stmt = stmt.where(
                (_rem.c.created_at < anchor)
                | ((_rem.c.created_at == anchor) & (_rem.c.id < before))
            )
    return [dict(r._mapping) for r in conn.execute(stmt.limit(limit))]


def containments_of(conn: Connection, remediation_id: str) -> list[dict[str, Any]]:
    """The containments a remediation made, oldest first."""
    stmt = (
        select(_cont)
        .where(_cont.c.remediation_id == remediation_id)
        .order_by(_cont.c.created_at)
        .limit(100)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def count_containments_not_removed(conn: Connection) -> int:
    """Containments not lifted yet (some may be past their expiry, about to be undone)."""
    stmt = select(func.count()).where(_cont.c.removed_at.is_(None))
    return int(conn.execute(stmt).scalar_one())


def reasons(conn: Connection, remediation_ids: Iterable[str], to_state: str) -> dict[str, str]:
    """Why each remediation last moved to `to_state` (its latest such history row)."""
    ids = sorted(set(remediation_ids))
    if not ids:
        return {}
    stmt = (
        select(_hist.c.remediation_id, _hist.c.reason)
        .where(
            _hist.c.remediation_id.in_(ids),
            _hist.c.step_key.is_(None),
            _hist.c.to_state == to_state,
        )
        .order_by(_hist.c.id)
    )
    return {str(rid): str(reason) for rid, reason in conn.execute(stmt)}
