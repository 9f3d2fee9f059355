"""The group-commit writer: one transaction for all waiting writes, failures kept apart."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, func, select

from clampdown.store import findings
from clampdown.store.db import Database
from clampdown.store.tables import FindingRow, table
from tests.store.conftest import make_finding

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table(FindingRow))).scalar_one())


def test_run_returns_after_commit(db: Database) -> None:
    """What `run` wrote is visible to another connection as soon as it returns."""
    row_id, new = db.run(lambda conn: findings.insert_if_new(conn, make_finding("a"), now=NOW))
    assert new
    with db.read() as conn:
        assert findings.get(conn, row_id) is not None


def test_one_failing_write_does_not_take_the_batch_down(db: Database) -> None:
    """Writes queued together commit; only the failing one gets its error."""
    gate = threading.Event()
    started = threading.Event()

    def hold(conn: Connection) -> None:
        started.set()
        gate.wait(5)

    def boom(conn: Connection) -> None:
        findings.insert_if_new(conn, make_finding("doomed"), now=NOW)
        raise RuntimeError("refused")

    # The first write holds the writer so that the next three are queued into one batch.
    first = db.submit(hold)
    assert started.wait(5)
    good = [
        db.submit(lambda conn, n=n: findings.insert_if_new(conn, make_finding(f"ok-{n}"), now=NOW))
        for n in range(2)
    ]
    bad = db.submit(boom)
    gate.set()
    first.result(5)
    assert all(f.result(5)[1] for f in good)
    with pytest.raises(RuntimeError, match="refused"):
        bad.result(5)
    assert count(db) == 2


async def test_run_async_waits_without_blocking_the_loop(db: Database) -> None:
    row_id, _ = await db.run_async(
        lambda conn: findings.insert_if_new(conn, make_finding("async"), now=NOW)
    )
    assert row_id > 0
    assert count(db) == 1


async def test_a_caller_that_gives_up_does_not_stop_the_writer(db: Database) -> None:
    """A cancelled write is dropped; the writer goes on serving everyone else."""
    import asyncio

    gate = threading.Event()
    started = threading.Event()

    def hold(conn: Connection) -> None:
        started.set()
        gate.wait(5)

    first = db.submit(hold)
    assert started.wait(5)
    waiting = asyncio.ensure_future(
        db.run_async(lambda conn: findings.insert_if_new(conn, make_finding("gave-up"), now=NOW))
    )
    await asyncio.sleep(0.05)
    waiting.cancel()
    await asyncio.sleep(0.05)  # let the cancellation reach the queued write
    gate.set()
    await asyncio.to_thread(first.result, 5)
    _, new = await asyncio.wait_for(
        db.run_async(lambda conn: findings.insert_if_new(conn, make_finding("later"), now=NOW)), 5
    )
    assert new
    assert count(db) == 1
