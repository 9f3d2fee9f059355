"""Decision tallies in the store: additive writes, the flusher, and the collateral signal."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from clampdown.metrics.decisions import DecisionTally
from clampdown.metrics.flush import TallyFlusher
from clampdown.model import Decision
from clampdown.store import tallies
from clampdown.store.db import Database
from clampdown.store.tables import DecisionTallyRow, table

H10 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
H11 = H10 + timedelta(hours=1)
H12 = H10 + timedelta(hours=2)


def row(bucket: datetime, api: str, allowed: int, denied: int, throttled: int) -> dict[str, Any]:
    return {
        "bucket_start": bucket,
        "api": api,
        "allowed": allowed,
        "denied": denied,
        "throttled": throttled,
    }


def stored(db: Database) -> dict[tuple[datetime, str], tuple[int, int, int]]:
    t = table(DecisionTallyRow)
    with db.read() as conn:
        return {
            (r.bucket_start, r.api): (r.allowed, r.denied, r.throttled)
            for r in conn.execute(select(t))
        }


def test_add_inserts_then_adds_to_existing_rows(db: Database) -> None:
    with db.write() as conn:
        tallies.add(conn, [row(H10, "orders", 5, 1, 0), row(H10, "*", 1, 0, 0)])
    with db.write() as conn:
        tallies.add(conn, [row(H10, "orders", 2, 0, 3), row(H11, "orders", 1, 1, 1)])
    assert stored(db) == {
        (H10, "orders"): (7, 1, 3),
        (H10, "*"): (1, 0, 0),
        (H11, "orders"): (1, 1, 1),
    }


def test_add_merges_rows_of_one_key_and_cuts_long_names(db: Database) -> None:
    """PostgreSQL refuses one upsert touching a row twice: duplicates are summed first."""
    long = "a" * 400
    with db.write() as conn:
        tallies.add(
            conn,
            [
                row(H10, "x", 1, 0, 0),
                row(H10, "x", 0, 2, 0),
                row(H10, long, 1, 0, 0),
                row(H10, long + "b", 0, 0, 1),
            ],
        )
    assert stored(db) == {(H10, "x"): (1, 2, 0), (H10, "a" * 300): (1, 0, 1)}


def test_flush_writes_counts_and_two_flushes_add_up(db: Database) -> None:
    clock = H10.timestamp() + 30
    tally = DecisionTally(clock=lambda: clock)
    flusher = TallyFlusher(tally, db)
    tally.count("orders", Decision.ALLOW)
    tally.count("orders", Decision.DENY)
    tally.count("", Decision.THROTTLE)
    assert asyncio.run(flusher.flush()) == 2
    tally.count("orders", Decision.DENY)
    tally.count("orders", Decision.DENY)
    assert asyncio.run(flusher.flush()) == 1
    assert asyncio.run(flusher.flush()) == 0
    assert stored(db) == {(H10, "orders"): (1, 3, 0), (H10, "*"): (0, 0, 1)}


def test_a_failed_flush_keeps_the_counts_for_the_next(db: Database) -> None:
    tally = DecisionTally(clock=lambda: H10.timestamp())
    broken = Database("sqlite:////nonexistent-dir/none.db")
    tally.count("orders", Decision.DENY)
    with pytest.raises(OperationalError):
        asyncio.run(TallyFlusher(tally, broken).flush())
    broken.dispose()
    tally.count("orders", Decision.ALLOW)
    asyncio.run(TallyFlusher(tally, db).flush())
    assert stored(db) == {(H10, "orders"): (1, 1, 0)}


def test_the_flusher_writes_once_more_when_stopped(db: Database) -> None:
    tally = DecisionTally(clock=lambda: H10.timestamp())
    flusher = TallyFlusher(tally, db, interval=3600)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(flusher.run(stop))
        await asyncio.sleep(0)
        tally.count("orders", Decision.DENY)
        stop.set()
        await task

    asyncio.run(run())
    assert stored(db) == {(H10, "orders"): (0, 1, 0)}


def test_collateral_sums_apis_with_both_allowed_and_refused_traffic(db: Database) -> None:
    with db.write() as conn:
        tallies.add(
            conn,
            [
                row(H10, "orders", 10, 2, 0),
                row(H11, "orders", 5, 0, 1),
                row(H10, "login", 0, 9, 0),  # only refused: not collateral
                row(H10, "catalog", 50, 0, 0),  # only allowed: not collateral
                row(H10, "cart", 3, 0, 4),
                row(H11, "cart", 0, 1, 0),
                row(H12, "orders", 100, 100, 100),  # outside [since, until)
                row(H10 - timedelta(hours=1), "orders", 7, 7, 7),  # before since
            ],
        )
        got = tallies.collateral(conn, since=H10, until=H12)
    assert got == [
        {"api": "cart", "allowed": 3, "denied": 1, "throttled": 4},
        {"api": "orders", "allowed": 15, "denied": 2, "throttled": 1},
    ]


def test_collateral_needs_both_within_the_period(db: Database) -> None:
    """Allowed in one hour and denied in another of the period still counts; outside not."""
    with db.write() as conn:
        tallies.add(conn, [row(H10, "orders", 4, 0, 0), row(H11, "orders", 0, 0, 2)])
        both = tallies.collateral(conn, since=H10, until=H12)
        first_hour = tallies.collateral(conn, since=H10, until=H11)
    assert both == [{"api": "orders", "allowed": 4, "denied": 0, "throttled": 2}]
    assert first_hour == []
