"""Findings: idempotent insert on (source, source_id), status updates, look-ups and listings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from clampdown.model import Finding
from clampdown.store.tables import FindingRow, insert_new, table

_t = table(FindingRow)
_UNIQUE = ("source", "source_id")
_GET = select(_t.c.data, _t.c.received_at).where(_t.c.id == bindparam("b_id"))
_SAME = select(_t.c.id).where(
    _t.c.source == bindparam("b_source"), _t.c.source_id == bindparam("b_source_id")
)
# The status is read out of the stored document, not the whole document: a repeat costs the
# same look-up as before plus one comparison.
_STATUS = _t.c.data["status"].as_string()
_SAME_STATUS = _SAME.add_columns(_STATUS.label("status"))
_RESTATE = (
    update(_t)
    .where(_t.c.id == bindparam("b_id"), _t.c.data["status"].as_string() == bindparam("b_was"))
    .values(
        data=bindparam("b_data", type_=_t.c.data.type),
        shape=bindparam("b_shape"),
        severity=bindparam("b_severity"),
        title=bindparam("b_title"),
    )
)


@dataclass(frozen=True)
class Stored:
    """What storing one delivered finding did."""

    id: int
    new: bool
    was: str | None = None
    """The status this delivery replaced; None when the finding is new or its status is the same."""


def _values(finding: Finding, now: datetime) -> dict[str, Any]:
    return {
        "source": finding.source,
        "source_id": finding.source_id,
        "shape": finding.shape,
        "kind": finding.kind.value,
        "type": finding.type,
        "severity": finding.severity.value,
        "fingerprint": finding.fingerprint,
        "title": finding.title,
        "received_at": now,
        "data": finding.model_dump(mode="json"),
    }


def insert_if_new(conn: Connection, finding: Finding, *, now: datetime) -> tuple[int, bool]:
    """Store `finding` unless (source, source_id) is known; returns (row id, inserted)."""
    values = _values(finding, now)
    row_id = conn.execute(
        insert_new(_t, ("source", "source_id"), conn.dialect.name), values
    ).scalar()
    if row_id is not None:
        return int(row_id), True
    existing = conn.execute(
        _SAME, {"b_source": finding.source, "b_source_id": finding.source_id}
    ).scalar_one()
    return int(existing), False


def store(conn: Connection, finding: Finding, *, now: datetime) -> Stored:
    """Store a new finding, or take a known one's new status (and document) from `finding`.

    A repeat with the same status changes nothing. When the status differs, the stored
    document is replaced (when it was first received stays) and `was` says what it replaced;
    of two deliveries changing the same status at once, only one reports the change.
    """
    values = _values(finding, now)
    row_id = conn.execute(
        insert_new(_t, ("source", "source_id"), conn.dialect.name), values
    ).scalar()
    if row_id is not None:
        return Stored(int(row_id), True)
    row = conn.execute(
        _SAME_STATUS, {"b_source": finding.source, "b_source_id": finding.source_id}
    ).one()
    if row.status is None or row.status == finding.status:
        return Stored(int(row.id), False)
    moved = conn.execute(
        _RESTATE,
        {
            "b_id": row.id,
            "b_was": row.status,
            "b_data": values["data"],
            "b_shape": values["shape"],
            "b_severity": values["severity"],
            "b_title": values["title"],
        },
    ).rowcount
    return Stored(int(row.id), False, str(row.status) if moved else None)


def get(conn: Connection, finding_id: int) -> tuple[Finding, datetime] | None:
    """The finding with that id and when it was received."""
    row = conn.execute(_GET, {"b_id": finding_id}).first()
    if row is None:
        return None
    return Finding.model_validate(row.data), row.received_at


def list_recent(
    conn: Connection, *, limit: int, before_id: int | None = None, type_: str | None = None
) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated by id."""
    stmt = select(
        _t.c.id,
        _t.c.source,
        _t.c.source_id,
        _t.c.shape,
        _t.c.kind,
        _t.c.type,
        _t.c.severity,
        _t.c.title,
        _t.c.fingerprint,
        _t.c.received_at,
    ).order_by(_t.c.id.desc())
    if before_id is not None:
        stmt = stmt.where(_t.c.id < before_id)
    if type_ is not None:
        stmt = stmt.where(_t.c.type == type_)
    return [dict(r._mapping) for r in conn.execute(stmt.limit(limit))]


def received_between(
    conn: Connection, since: datetime, until: datetime, *, after_id: int = 0, limit: int = 500
) -> list[tuple[int, Finding, datetime]]:
    """(id, finding, received_at) received in [since, until), in order of arrival.

    Keyset-paginated: pass the last id seen as `after_id` for the next page.
    """
    stmt = (
        select(_t.c.id, _t.c.data, _t.c.received_at)
        .where(_t.c.received_at >= since, _t.c.received_at < until, _t.c.id > after_id)
        .order_by(_t.c.id)
        .limit(limit)
    )
    return [
        (int(row.id), Finding.model_validate(row.data), row.received_at)
        for row in conn.execute(stmt)
    ]


def count_between(conn: Connection, since: datetime, until: datetime) -> int:
    """How many findings were received in [since, until)."""
    stmt = select(func.count()).where(_t.c.received_at >= since, _t.c.received_at < until)
    return int(conn.execute(stmt).scalar_one())
