"""Bulk loading of prepared rows (demo history, benchmark data): one executemany per table.

The rows are written as the engine would have written them one at a time; this module only
writes many at once, parents before children, inside the caller's transaction.

On SQLite, SQLAlchemy's per-value processing (UTC datetimes, JSON) costs several times what
SQLite spends inserting, so the same compiled INSERT is handed to the driver with values
converted here, to exactly what those types would have stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Insert, func, insert, select, text

from clampdown.store.tables import (
    ContainmentEventRow,
    ContainmentRow,
    FindingRow,
    HistoryRow,
    JobRow,
    RemediationFindingRow,
    RemediationRow,
    StepRow,
    TaskRow,
    UtcDateTime,
    table,
)

Row = dict[str, Any]
_CACHE_KIB = 256 * 1024

_findings = table(FindingRow)
_ADD_FINDINGS = insert(_findings)
_LAST_FINDING = select(func.coalesce(func.max(_findings.c.id), 0))
# Parents before children; history ids follow insertion order, so rows go in as given.
_ORDER = (
    ("remediations", insert(table(RemediationRow))),
    ("remediation_findings", insert(table(RemediationFindingRow))),
    ("steps", insert(table(StepRow))),
    ("history", insert(table(HistoryRow))),
    ("containments", insert(table(ContainmentRow))),
    ("containment_events", insert(table(ContainmentEventRow))),
    ("tasks", insert(table(TaskRow))),
    ("jobs", insert(table(JobRow))),
)


@dataclass
class Rows:
    """Rows of every table but findings, ready to insert (findings go first, for their ids)."""

    remediations: list[Row] = field(default_factory=list)
    remediation_findings: list[Row] = field(default_factory=list)
    steps: list[Row] = field(default_factory=list)
    history: list[Row] = field(default_factory=list)
    containments: list[Row] = field(default_factory=list)
    containment_events: list[Row] = field(default_factory=list)
    tasks: list[Row] = field(default_factory=list)
    jobs: list[Row] = field(default_factory=list)

    def extend(self, other: Rows) -> None:
        """Append every row of `other`."""
        for name in self.counts():
            getattr(self, name).extend(getattr(other, name))

    def counts(self) -> dict[str, int]:
        """How many rows each table gets."""
        return {f.name: len(getattr(self, f.name)) for f in fields(self)}


def prepare(conn: Connection) -> None:
    """Make a connection fit for loading much at once (on SQLite, a larger page cache)."""
    if conn.dialect.name == "sqlite":
        # Random keys (uuids) spread index writes over the whole file: keep it in memory.
        conn.exec_driver_sql(f"PRAGMA cache_size = -{_CACHE_KIB}")


def next_finding_id(conn: Connection) -> int:
    """The id after the highest finding stored (bulk loads give findings their ids)."""
    return int(conn.execute(_LAST_FINDING).scalar_one()) + 1


def add_findings(conn: Connection, rows: list[Row]) -> None:
    """Insert finding rows, `id` included; call `follow_ids` once the load is done."""
    if rows:
        _insert(conn, _ADD_FINDINGS, rows)


def follow_ids(conn: Connection) -> None:
    """After findings were given ids: let the database's own numbering continue after them."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text(
                "SELECT setval(pg_get_serial_sequence('findings', 'id'), "
                "(SELECT coalesce(max(id), 0) + 1 FROM findings), false)"
            )
        )


def add(conn: Connection, rows: Rows) -> None:
    """Insert every row, parents before children."""
    for name, statement in _ORDER:
        batch = getattr(rows, name)
        if batch:
            _insert(conn, statement, batch)


Convert = Callable[[Any], Any]


def _insert(conn: Connection, statement: Insert, rows: list[Row]) -> None:
    if conn.dialect.name != "sqlite":
        conn.execute(statement, rows)
        return
    keys = tuple(rows[0])
    compiled = statement.compile(dialect=conn.dialect, column_keys=list(keys))
    order: Sequence[str] = compiled.positiontup or ()
    if set(order) != set(keys):
        conn.execute(statement, rows)  # a default to compute: leave it to SQLAlchemy
        return
    types = statement.table.c
    # Column by column (map and zip run in C): the per-value loop would cost the most.
    columns = [[row[name] for row in rows] for name in order]
    for index, name in enumerate(order):
        convert = _converter(types[name].type)
        if convert is not None:
            columns[index] = list(map(convert, columns[index]))
    conn.exec_driver_sql(compiled.string, list(zip(*columns, strict=True)))


def _converter(type_: Any) -> Convert | None:
    if isinstance(type_, UtcDateTime):
        return _sqlite_time
    if isinstance(type_, JSON):
        return _json
    return None


def _sqlite_time(value: datetime | None) -> str | None:
    # What UtcDateTime then SQLite's DATETIME store: UTC wall time, always with microseconds.
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


def _json(value: Any) -> str:
    # As the engine's json_serializer (store.db): None is stored as JSON null.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
