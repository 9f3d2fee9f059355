"""store.bulk: rows loaded in bulk are stored exactly as the store's own writes store them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import select

from clampdown.store import bulk, findings, remediations
from clampdown.store.db import Database
from clampdown.store.tables import HistoryRow, table
from tests.store.conftest import make_finding, make_remediation

# Microseconds of 0 and of 5, and a time given in another zone: each stored the same way.
TIMES = (
    datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC),
    datetime(2026, 11, 26, 12, 0, 0, 5, tzinfo=UTC),
    datetime(2026, 11, 26, 13, 30, 0, 250, tzinfo=timezone(timedelta(hours=1, minutes=30))),
)


def raw(db: Database, sql: str) -> list[tuple[object, ...]]:
    """Rows as the driver returns them, before any type processing."""
    with db.engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(sql)]


def test_history_rows_are_stored_as_record_stores_them(db: Database) -> None:
    with db.write() as conn:
        rid = make_remediation(conn)
        for at in TIMES:
            remediations.record(conn, rid, "s", "pending", "running", reason="r", actor="a", now=at)
        rows = [
            {
                "remediation_id": rid,
                "step_key": "s",
                "at": at,
                "from_state": "pending",
                "to_state": "running",
                "reason": "r",
                "actor": "a",
            }
            for at in TIMES
        ]
        bulk.add(conn, bulk.Rows(history=rows))
    stored = raw(db, "SELECT at FROM history ORDER BY id")
    assert stored[:3] == stored[3:]
    with db.read() as conn:
        read = [r.at for r in conn.execute(select(table(HistoryRow)).order_by("id"))]
    assert read[3:] == [at.astimezone(UTC) for at in TIMES]


def test_finding_rows_are_stored_as_insert_if_new_stores_them(db: Database) -> None:
    finding = make_finding("one", user_agent="<script>\u00e9</script>")
    at = TIMES[1]
    with db.write() as conn:
        first, _ = findings.insert_if_new(conn, finding, now=at)
        copy = finding.model_copy(update={"source_id": "two"})
        bulk.add_findings(
            conn,
            [
                {
                    "id": first + 1,
                    "source": copy.source,
                    "source_id": copy.source_id,
                    "shape": copy.shape,
                    "kind": copy.kind.value,
                    "type": copy.type,
                    "severity": copy.severity.value,
                    "fingerprint": copy.fingerprint,
                    "title": copy.title,
                    "received_at": at,
                    "data": copy.model_dump(mode="json"),
                }
            ],
        )
        bulk.follow_ids(conn)
        third, new = findings.insert_if_new(conn, make_finding("three"), now=at)
    assert new
    assert third == first + 2
    one, two = raw(db, "SELECT received_at, data FROM findings WHERE id <= 2 ORDER BY id")
    assert one[0] == two[0]
    if isinstance(one[1], str):  # SQLite keeps JSON as text: the very same text
        assert one[1].replace('"one"', '"two"') == two[1]
    with db.read() as conn:
        got = findings.get(conn, first + 1)
    assert got is not None
    assert got[0] == copy
    assert got[1] == at


def test_next_finding_id_follows_the_highest(db: Database) -> None:
    with db.write() as conn:
        assert bulk.next_finding_id(conn) == 1
        findings.insert_if_new(conn, make_finding("a"), now=TIMES[0])
        assert bulk.next_finding_id(conn) == 2
