"""Source state: each configured source's checkpoint and how its pulls went.

A row is created on a source's first attempt. The checkpoint only moves forward, and only
when a pull succeeded: a pull that failed (or never finished) leaves it where it was, so the
next pull reads the same records again (ingest is idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update

from clampdown.store.tables import SourceStateRow, insert_new, table

_t = table(SourceStateRow)
ERROR_LENGTH = 2000
"""The longest error message kept."""


@dataclass(frozen=True)
class SourceState:
    """One source's stored state."""

    name: str
    checkpoint: datetime | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    pulled: int
    ingested_total: int
    errors_total: int


def get(conn: Connection, name: str) -> SourceState | None:
    """The state of source `name`, or None when it was never pulled."""
    row = conn.execute(select(_t).where(_t.c.name == name)).first()
    return SourceState(**row._mapping) if row is not None else None


def all_states(conn: Connection) -> dict[str, SourceState]:
    """The state of every source ever pulled, by name."""
    return {row.name: SourceState(**row._mapping) for row in conn.execute(select(_t))}


def _ensure(conn: Connection, name: str) -> None:
    conn.execute(
        insert_new(_t, ("name",), conn.dialect.name),
        {"name": name, "pulled": 0, "ingested_total": 0, "errors_total": 0},
    )


def attempted(conn: Connection, name: str, *, now: datetime) -> None:
    """Record that a pull of `name` starts now."""
    _ensure(conn, name)
    conn.execute(update(_t).where(_t.c.name == name).values(last_attempt_at=now))


def succeeded(
    conn: Connection,
    name: str,
    *,
    checkpoint: datetime,
    pulled: int,
    ingested: int,
    now: datetime,
) -> None:
    """Record a pull that read and ingested everything up to `checkpoint`."""
    _ensure(conn, name)
    current = conn.execute(select(_t.c.checkpoint).where(_t.c.name == name)).scalar_one()
    # A slower pull that started earlier never moves the checkpoint back, unless the stored
    # one is ahead of this clock (it ran fast): then this pull's start is the truth.
    if current is not None and checkpoint < current <= now:
        checkpoint = current
    conn.execute(
        update(_t)
        .where(_t.c.name == name)
        .values(
            checkpoint=checkpoint,
            last_success_at=now,
            pulled=pulled,
            ingested_total=_t.c.ingested_total + ingested,
        )
    )


def failed(conn: Connection, name: str, *, error: str, now: datetime) -> None:
    """Record a pull that failed with `error`; the checkpoint stays."""
    _ensure(conn, name)
    conn.execute(
        update(_t)
        .where(_t.c.name == name)
        .values(
            last_error=error[:ERROR_LENGTH],
            last_error_at=now,
            errors_total=_t.c.errors_total + 1,
        )
    )
