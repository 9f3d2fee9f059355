"""The built-in containment list and its change stream."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, text, update

from clampdown.store.tables import ContainmentEventRow, ContainmentRow, insert_new, table

_t = table(ContainmentRow)
BUILTIN = "builtin"  # the list the decision API enforces; only its changes are streamed
_ev = table(ContainmentEventRow)


_INSERT_EVENT = insert(_ev)
_GET = select(_t).where(_t.c.id == bindparam("b_id"))
_BY_KEY = select(_t.c.id).where(_t.c.key == bindparam("b_key"))
_LIFT = (
    update(_t)
    .where(_t.c.id == bindparam("b_id"), _t.c.removed_at.is_(None))
    .values(removed_at=bindparam("b_now"), removed_reason=bindparam("b_reason"))
)
_TARGET = select(_t.c.target).where(_t.c.id == bindparam("b_id"))
_STREAM_LOCK = 0x636C616D  # any constant shared by every Clampdown process


def _serialize_stream(conn: Connection) -> None:
    # Concurrent PostgreSQL writers could commit change seq N+1 before N, and a gateway
    # that already read N+1 would never see N. One writer at a time keeps the stream gapless.
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _STREAM_LOCK})


def add(conn: Connection, values: dict[str, Any], *, now: datetime) -> tuple[str, bool]:
    """Insert a containment unless one with the same key exists; returns (id, inserted)."""
    _serialize_stream(conn)
    cid = uuid.uuid4().hex
    values = {"target": BUILTIN, **values}
    inserted = conn.execute(
        insert_new(_t, ("key",), conn.dialect.name), {**values, "id": cid, "created_at": now}
    ).scalar()
    if inserted is None:
        return str(conn.execute(_BY_KEY, {"b_key": values["key"]}).scalar_one()), False
    if values["target"] == BUILTIN:
        conn.execute(_INSERT_EVENT, {"containment_id": cid, "op": "add", "at": now})
    return cid, True


def remove(conn: Connection, containment_id: str, *, reason: str, now: datetime) -> bool:
    """Lift a containment; False when it was not active."""
    _serialize_stream(conn)
    done = conn.execute(_LIFT, {"b_id": containment_id, "b_now": now, "b_reason": reason}).rowcount
    if done and conn.execute(_TARGET, {"b_id": containment_id}).scalar_one() == BUILTIN:
        conn.execute(_INSERT_EVENT, {"containment_id": containment_id, "op": "remove", "at": now})
    return bool(done)


def set_expiry(
    conn: Connection, containment_id: str, expires_at: datetime, *, now: datetime
) -> bool:
    """Change an active containment's expiry; the stream carries it as an `add` (an upsert)."""
    _serialize_stream(conn)
    done = conn.execute(
        update(_t)
        .where(_t.c.id == containment_id, _t.c.removed_at.is_(None))
        .values(expires_at=expires_at)
    ).rowcount
    if done and conn.execute(_TARGET, {"b_id": containment_id}).scalar_one() == BUILTIN:
        conn.execute(_INSERT_EVENT, {"containment_id": containment_id, "op": "add", "at": now})
    return bool(done)


def get(conn: Connection, containment_id: str) -> dict[str, Any] | None:
    """One containment."""
    row = conn.execute(_GET, {"b_id": containment_id}).first()
    return dict(row._mapping) if row else None


def active(
    conn: Connection,
    *,
    now: datetime | None = None,
    target: str | None = None,
    scope: str | None = None,
) -> list[dict[str, Any]]:
    """Containments not lifted (and, given `now`, not past their expiry), of one target/scope."""
    stmt = select(_t).where(_t.c.removed_at.is_(None)).order_by(_t.c.created_at)
    if target is not None:
        stmt = stmt.where(_t.c.target == target)
    if scope is not None:
        stmt = stmt.where(_t.c.scope == scope)
    if now is not None:
        stmt = stmt.where((_t.c.expires_at.is_(None)) | (_t.c.expires_at > now))
    return [dict(r._mapping) for r in conn.execute(stmt)]


def held_by(conn: Connection, remediation_id: str) -> list[dict[str, Any]]:
    """The containments of a remediation that are not lifted, on every target, oldest first."""
    stmt = (
        select(_t)
        .where(_t.c.remediation_id == remediation_id, _t.c.removed_at.is_(None))
        .order_by(_t.c.created_at)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def list_all(conn: Connection, *, include_removed: bool, limit: int) -> list[dict[str, Any]]:
    """Newest first."""
    stmt = select(_t).order_by(_t.c.created_at.desc()).limit(limit)
    if not include_removed:
        stmt = stmt.where(_t.c.removed_at.is_(None))
    return [dict(r._mapping) for r in conn.execute(stmt)]


def cursor(conn: Connection) -> int:
    """The newest change's sequence number (0 when nothing happened yet)."""
    return int(conn.execute(select(func.coalesce(func.max(_ev.c.seq), 0))).scalar_one())


def changes_since(conn: Connection, seq: int, *, limit: int) -> list[dict[str, Any]]:
    """Changes after `seq`, each with its containment, oldest first."""
    stmt = (
        select(_ev.c.seq, _ev.c.op, _t)
        .join(_t, _t.c.id == _ev.c.containment_id)
        .where(_ev.c.seq > seq)
        .order_by(_ev.c.seq)
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]
