"""Findings: idempotent insert on (source, source_id), also under concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import func, select

from clampdown.store import findings
from clampdown.store.db import Database
from clampdown.store.tables import FindingRow, table
from tests.store.conftest import make_finding


def count_rows(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table(FindingRow))).scalar_one())


def test_insert_if_new_is_idempotent_on_source_and_source_id(db: Database) -> None:
    now = datetime.now(UTC)
    with db.write() as conn:
        first_id, first_new = findings.insert_if_new(conn, make_finding("a-1"), now=now)
    with db.write() as conn:
        again_id, again_new = findings.insert_if_new(
            conn, make_finding("a-1", title="changed on redelivery"), now=now
        )
    assert first_new
    assert not again_new
    assert again_id == first_id
    assert count_rows(db) == 1
    with db.read() as conn:
        stored = findings.get(conn, first_id)
    assert stored is not None
    assert stored[0].title == "Access from a suspicious IP"  # the first delivery is kept


def test_same_source_id_from_another_source_is_another_finding(db: Database) -> None:
    now = datetime.now(UTC)
    with db.write() as conn:
        a, _ = findings.insert_if_new(conn, make_finding("x"), now=now)
        b, new = findings.insert_if_new(conn, make_finding("x", source="ocsf"), now=now)
    assert new
    assert a != b
    assert count_rows(db) == 2


def test_get_round_trips_the_finding(db: Database) -> None:
    now = datetime.now(UTC)
    finding = make_finding("rt", ips=["2001:db8::1"], user_agent="<script>")
    with db.write() as conn:
        fid, _ = findings.insert_if_new(conn, finding, now=now)
    with db.read() as conn:
        got = findings.get(conn, fid)
        assert findings.get(conn, fid + 1000) is None
    assert got is not None
    assert got[0] == finding
    assert got[1] == now


def test_concurrent_inserts_of_one_finding_store_one_row(db: Database) -> None:
    """Eight threads deliver the same alert at once: one row, one `new`, one id for all."""
    workers = 8
    barrier = threading.Barrier(workers)
    finding = make_finding("raced")

    def deliver(_: int) -> tuple[int, bool]:
        barrier.wait()
        with db.write() as conn:
            return findings.insert_if_new(conn, finding, now=datetime.now(UTC))

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(deliver, range(workers)))
    assert sum(new for _, new in results) == 1
    assert len({fid for fid, _ in results}) == 1
    assert count_rows(db) == 1


def test_list_recent_is_newest_first_and_filters(db: Database) -> None:
    now = datetime.now(UTC)
    with db.write() as conn:
        ids = [
            findings.insert_if_new(conn, make_finding(f"l-{n}", type=t), now=now)[0]
            for n, t in enumerate(["A", "B", "A"])
        ]
    with db.read() as conn:
        assert [r["id"] for r in findings.list_recent(conn, limit=10)] == ids[::-1]
        assert [r["id"] for r in findings.list_recent(conn, limit=10, type_="A")] == [
            ids[2],
            ids[0],
        ]
        assert [r["id"] for r in findings.list_recent(conn, limit=1, before_id=ids[2])] == [ids[1]]
