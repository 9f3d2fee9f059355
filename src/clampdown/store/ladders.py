"""Response ladders: per playbook and identity, the rung reached and when it was last seen."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update

from clampdown.store.tables import LadderRow, insert_new, table

_t = table(LadderRow)


def climb(
    conn: Connection,
    playbook: str,
    key: str,
    *,
    decay: timedelta,
    top: int,
    now: datetime,
) -> tuple[int, int]:
    """Record one more offense by `key`; returns (rung level, offenses since the last reset).

    The first offense, and the first after `decay` without one, is level 0; each later one
    climbs a rung, up to `top`, which then repeats.
    """
    conn.execute(
        insert_new(_t, ("playbook", "key"), conn.dialect.name),
        {"playbook": playbook, "key": key, "level": -1, "offenses": 0, "last_at": now},
    )
    where = (_t.c.playbook == playbook) & (_t.c.key == key)
    stmt = select(_t.c.level, _t.c.offenses, _t.c.last_at).where(where)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    level, offenses, last_at = conn.execute(stmt).one()
    if level >= 0 and now - last_at > decay:
        level, offenses = -1, 0
    level, offenses = min(level + 1, top), offenses + 1
    conn.execute(update(_t).where(where).values(level=level, offenses=offenses, last_at=now))
    return level, offenses
