"""Decision tallies: how many requests for each API the decision API allowed, denied and
throttled, per hour. Rows are only ever added to (each API process adds its own counts)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from clampdown.store.tables import DecisionTallyRow, table

_t = table(DecisionTallyRow)
COUNTS = ("allowed", "denied", "throttled")
API_LENGTH = 300
"""The longest API name kept; longer ones are cut (and their counts merged)."""


@cache
def _upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (bucket_start, api) DO UPDATE SET n = n + excluded.n."""
    dialect_insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = dialect_insert(_t)
    return stmt.on_conflict_do_update(
        index_elements=["bucket_start", "api"],
        set_={name: _t.c[name] + stmt.excluded[name] for name in COUNTS},
    )


def add(conn: Connection, rows: Iterable[dict[str, Any]]) -> None:
    """Add counts ({bucket_start, api, allowed, denied, throttled}) to the stored ones."""
    merged: dict[tuple[datetime, str], dict[str, Any]] = {}
    for row in rows:
        api = row["api"][:API_LENGTH]
        # One statement must not touch a row twice (PostgreSQL refuses): merge first.
        into = merged.get((row["bucket_start"], api))
        if into is None:
            merged[(row["bucket_start"], api)] = {
                "bucket_start": row["bucket_start"],
                "api": api,
                **{name: row[name] for name in COUNTS},
            }
        else:
            for name in COUNTS:
                into[name] += row[name]
    if merged:
        conn.execute(_upsert(conn.dialect.name), list(merged.values()))


def collateral(conn: Connection, *, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """APIs that saw both allowed and refused (denied or throttled) requests in the hours
    starting in [since, until), with the sums: {"api", "allowed", "denied", "throttled"}.

    Most refused first, then by API name.
    """
    allowed = func.sum(_t.c.allowed)
    denied = func.sum(_t.c.denied)
    throttled = func.sum(_t.c.throttled)
    stmt = (
        select(
            _t.c.api,
            allowed.label("allowed"),
            denied.label("denied"),
            throttled.label("throttled"),
        )
        .where(_t.c.bucket_start >= since, _t.c.bucket_start < until)
        .group_by(_t.c.api)
        .having(allowed > 0, denied + throttled > 0)
        .order_by((denied + throttled).desc(), _t.c.api)
    )
    return [
        {
            "api": row.api,
            "allowed": int(row.allowed),
            "denied": int(row.denied),
            "throttled": int(row.throttled),
        }
        for row in conn.execute(stmt)
    ]
