"""findings.store: a new finding is inserted, a known one takes a changed status, once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from clampdown.store import findings
from clampdown.store.db import Database
from clampdown.store.findings import Stored
from tests.store.conftest import make_finding

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def test_new_then_same_then_changed(db: Database) -> None:
    with db.write() as conn:
        first = findings.store(conn, make_finding("a"), now=NOW)
        same = findings.store(conn, make_finding("a", title="again"), now=NOW)
        later = NOW + timedelta(hours=1)
        changed = findings.store(conn, make_finding("a", status="resolved"), now=later)
        again = findings.store(conn, make_finding("a", status="resolved"), now=later)

    assert first == Stored(first.id, True)
    assert same == Stored(first.id, False)
    assert changed == Stored(first.id, False, "active")
    assert again == Stored(first.id, False)
    with db.read() as conn:
        got = findings.get(conn, first.id)
    assert got is not None
    finding, received = got
    # The document is the latest delivery's; when it was first received stays.
    assert (finding.status, finding.title, received) == (
        "resolved",
        "Access from a suspicious IP",
        NOW,
    )


def test_two_deliveries_of_one_change_report_it_once(db: Database) -> None:
    """On PostgreSQL the second waits for the first's row lock, then sees the new status."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serializes writers: the two cannot overlap")
    with db.write() as conn:
        findings.store(conn, make_finding("b"), now=NOW)
    results: list[Stored] = []
    started = threading.Event()

    def second() -> None:
        started.set()
        with db.write() as conn:
            results.append(findings.store(conn, make_finding("b", status="dismissed"), now=NOW))

    with db.write() as conn:
        results.append(findings.store(conn, make_finding("b", status="dismissed"), now=NOW))
        thread = threading.Thread(target=second)
        thread.start()
        started.wait(5)
        thread.join(0.3)  # blocked on the row lock until this transaction commits
    thread.join(5)
    assert [r.was for r in results] == ["active", None]
