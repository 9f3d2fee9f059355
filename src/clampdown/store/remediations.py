"""Remediations, their steps and their history (every transition: when, why, by whom)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, text, update

from clampdown.store.tables import (
    HistoryRow,
    RemediationFindingRow,
    RemediationRow,
    StepRow,
    table,
)

_rem = table(RemediationRow)
_link = table(RemediationFindingRow)
_step = table(StepRow)
_hist = table(HistoryRow)

# Statements built once: values travel as parameters, so SQLAlchemy compiles each only once.
_INSERT_REM = insert(_rem)
_INSERT_LINK = insert(_link)
_INSERT_STEP = insert(_step)
_INSERT_HIST = insert(_hist)
_SET_STATE = (
    update(_rem)
    .where(_rem.c.id == bindparam("b_id"), _rem.c.state == bindparam("b_from"))
    .values(state=bindparam("b_to"), updated_at=bindparam("b_now"))
)
_UPDATE_STEP = update(_step).where(
    _step.c.remediation_id == bindparam("b_rid"), _step.c.key == bindparam("b_key")
)
_UPDATE_STEP_IF = _UPDATE_STEP.where(_step.c.state == bindparam("b_state"))
_GET = select(_rem).where(_rem.c.id == bindparam("b_id"))
_GET_LOCKED = _GET.with_for_update()
_STEPS = (
    select(_step).where(_step.c.remediation_id == bindparam("b_rid")).order_by(_step.c.position)
)
_STEP = select(_step).where(
    _step.c.remediation_id == bindparam("b_rid"), _step.c.key == bindparam("b_key")
)


def create(conn: Connection, values: dict[str, Any]) -> None:
    """Insert a remediation row and link its first finding."""
    conn.execute(_INSERT_REM, values)
    conn.execute(
        _INSERT_LINK,
        {
            "remediation_id": values["id"],
            "finding_id": values["finding_id"],
            "added_at": values["created_at"],
        },
    )


# A repeat does not join a remediation that failed or whose containment is over: it acts anew.
_NOT_JOINABLE = ("failed", "expired", "rolled_back")


def find_open_group(
    conn: Connection, *, playbook: str, group_key: str, now: datetime
) -> dict[str, Any] | None:
    """The remediation a repeat of this threat joins, if its grouping window is still open.

    On PostgreSQL the (playbook, group key) pair is locked until the transaction ends, so
    that two deliveries of the same threat planned at once open one remediation, not two.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"{playbook}\x1f{group_key}"},
        )
    row = conn.execute(
        select(_rem.c.id, _rem.c.state)
        .where(
            _rem.c.playbook == playbook,
            _rem.c.group_key == group_key,
            _rem.c.group_until > now,
            _rem.c.state.not_in(_NOT_JOINABLE),
        )
        .order_by(_rem.c.created_at.desc())
        .limit(1)
    ).first()
    return dict(row._mapping) if row else None


def join_group(conn: Connection, remediation_id: str, finding_id: int, *, now: datetime) -> bool:
    """Add a repeat finding to an open remediation; False if it was already linked."""
    linked = conn.execute(
        select(_link.c.finding_id).where(
            _link.c.remediation_id == remediation_id, _link.c.finding_id == finding_id
        )
    ).first()
    if linked:
        return False
    conn.execute(
        _INSERT_LINK, {"remediation_id": remediation_id, "finding_id": finding_id, "added_at": now}
    )
    conn.execute(
        update(_rem)
        .where(_rem.c.id == remediation_id)
        .values(finding_count=_rem.c.finding_count + 1, updated_at=now)
    )
    return True


def get(conn: Connection, remediation_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    """One remediation row as a dict."""
    stmt = _GET_LOCKED if lock and conn.dialect.name == "postgresql" else _GET
    row = conn.execute(stmt, {"b_id": remediation_id}).first()
    return dict(row._mapping) if row else None


def list_recent(
    conn: Connection,
    *,
    limit: int,
    state: str | None = None,
    playbook: str | None = None,
    before: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first; `before` is the id of the last row of the previous page."""
    stmt = select(_rem).order_by(_rem.c.created_at.desc(), _rem.c.id.desc())
    if state is not None:
        stmt = stmt.where(_rem.c.state == state)
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


def finding_ids(conn: Connection, remediation_id: str) -> list[int]:
    """The findings a remediation covers, first one first."""
    rows = conn.execute(
        select(_link.c.finding_id)
        .where(_link.c.remediation_id == remediation_id)
        .order_by(_link.c.added_at, _link.c.finding_id)
    )
    return [int(r.finding_id) for r in rows]


def of_finding(conn: Connection, finding_id: int) -> list[str]:
    """The remediations that cover a finding (its own, and those it joined), oldest first."""
    rows = conn.execute(
        select(_link.c.remediation_id)
        .where(_link.c.finding_id == finding_id)
        .order_by(_link.c.added_at, _link.c.remediation_id)
    )
    return [str(r.remediation_id) for r in rows]


def set_state(
    conn: Connection,
    remediation_id: str,
    *,
    from_state: str,
    to_state: str,
    reason: str,
    actor: str,
    now: datetime,
) -> bool:
    """Move a remediation from `from_state` to `to_state` and record it; False if it had moved."""
    return move(conn, remediation_id, from_state, [(to_state, reason, now)], actor=actor)


def move(
    conn: Connection,
    remediation_id: str,
    from_state: str,
    path: list[tuple[str, str, datetime]],
    *,
    actor: str,
) -> bool:
    """Move a remediation along `path` ((state, reason, when), ...) in one update, recording
    every transition; False if it was no longer in `from_state`."""
    last_state, _, last_at = path[-1]
    moved = conn.execute(
        _SET_STATE,
        {"b_id": remediation_id, "b_from": from_state, "b_to": last_state, "b_now": last_at},
    ).rowcount
    if not moved:
        return False
    record_path(conn, remediation_id, from_state, path, actor=actor)
    return True


def record_path(
    conn: Connection,
    remediation_id: str,
    from_state: str | None,
    path: list[tuple[str, str, datetime]],
    *,
    actor: str,
) -> None:
    """Record remediation-level transitions along `path` ((state, reason, when), ...)."""
    rows = []
    for state, reason, at in path:
        rows.append(
            {
                "remediation_id": remediation_id,
                "step_key": None,
                "at": at,
                "from_state": from_state,
                "to_state": state,
                "reason": reason,
                "actor": actor,
            }
        )
        from_state = state
    record_rows(conn, rows)


def record(
    conn: Connection,
    remediation_id: str,
    step_key: str | None,
    from_state: str | None,
    to_state: str,
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> None:
    """Append one history entry."""
    conn.execute(
        _INSERT_HIST,
        {
            "remediation_id": remediation_id,
            "step_key": step_key,
            "at": now,
            "from_state": from_state,
            "to_state": to_state,
            "reason": reason,
            "actor": actor,
        },
    )


def record_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Append prepared history rows (remediation_id, step_key, at, from/to, reason, actor)."""
    if rows:
        conn.execute(_INSERT_HIST, rows)


def history(conn: Connection, remediation_id: str) -> list[dict[str, Any]]:
    """Every recorded transition, oldest first."""
    rows = conn.execute(
        select(_hist).where(_hist.c.remediation_id == remediation_id).order_by(_hist.c.id)
    )
    return [dict(r._mapping) for r in rows]


def add_steps(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert the planned steps of a remediation."""
    if rows:
        conn.execute(_INSERT_STEP, rows)


def steps(conn: Connection, remediation_id: str) -> list[dict[str, Any]]:
    """The steps of a remediation in playbook order."""
    rows = conn.execute(_STEPS, {"b_rid": remediation_id})
    return [dict(r._mapping) for r in rows]


def get_step(conn: Connection, remediation_id: str, key: str) -> dict[str, Any] | None:
    """One step by its playbook id."""
    row = conn.execute(_STEP, {"b_rid": remediation_id, "b_key": key}).first()
    return dict(row._mapping) if row else None


def update_step(
    conn: Connection,
    remediation_id: str,
    key: str,
    *,
    expect_state: str | None = None,
    **values: Any,
) -> bool:
    """Update a step; with `expect_state`, only if it is still in that state."""
    params = {"b_rid": remediation_id, "b_key": key, **values}
    if expect_state is None:
        return bool(conn.execute(_UPDATE_STEP, params).rowcount)
    return bool(conn.execute(_UPDATE_STEP_IF, {**params, "b_state": expect_state}).rowcount)


def approved_by_person(conn: Connection, remediation_id: str) -> bool:
    """True when a person approved the remediation (its history records who)."""
    stmt = (
        select(func.count())
        .select_from(_hist)
        .where(
            _hist.c.remediation_id == remediation_id,
            _hist.c.step_key.is_(None),
            _hist.c.from_state == "awaiting_approval",
            _hist.c.to_state == "running",
        )
    )
    return bool(conn.execute(stmt).scalar_one())


def containing_since(
    conn: Connection, since: datetime, actions: frozenset[str]
) -> list[tuple[str, str]]:
    """(target, playbook) of each step of `actions` started after `since` that ran or runs.

    Steps, not containments, are counted: a step is marked running in the same transaction
    that decided to start it, so concurrent remediations see each other's.
    """
    stmt = (
        select(_step.c.params, _rem.c.playbook)
        .join(_rem, _rem.c.id == _step.c.remediation_id)
        .where(
            _step.c.started_at > since,
            _step.c.action.in_(sorted(actions)),
            _step.c.state.in_(("running", "succeeded", "undone")),
        )
    )
    return [
        (str((params or {}).get("target", "")), playbook) for params, playbook in conn.execute(stmt)
    ]


def step_by_idempotency_key(conn: Connection, key: str) -> dict[str, Any] | None:
    """The step whose idempotency key is `key` (what its containment is keyed by)."""
    row = conn.execute(select(_step).where(_step.c.idempotency_key == key)).first()
    return dict(row._mapping) if row else None
