"""Memos: what an action noted before it took effect, the same on every attempt of a step."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from clampdown.store.tables import MemoRow, insert_new, table

_t = table(MemoRow)


def first(conn: Connection, key: str, name: str, value: Any, *, now: datetime) -> Any:
    """Keep `value` under (key, name) unless something is kept there already; return what is."""
    conn.execute(
        insert_new(_t, ("idempotency_key", "name"), conn.dialect.name),
        {"idempotency_key": key, "name": name, "value": value, "created_at": now},
    )
    stmt = select(_t.c.value).where(_t.c.idempotency_key == key, _t.c.name == name)
    return conn.execute(stmt).scalar_one()
