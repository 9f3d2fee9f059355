"""The durable job queue: due work, leases, dead owners and concurrent claims."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from clampdown.store import jobs
from clampdown.store.db import Database
from tests.store.conftest import make_remediation

LEASE = timedelta(seconds=60)
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def enqueue(db: Database, count: int = 1, *, due_at: datetime = NOW) -> list[int]:
    """Queue `count` jobs for a new remediation; returns their ids, oldest first."""
    with db.write() as conn:
        rid = make_remediation(conn, now=NOW)
        for n in range(count):
            jobs.enqueue(conn, "run_step", rid, f"s{n}", due_at=due_at, now=NOW)
        rows = conn.execute(
            text("SELECT id FROM jobs WHERE remediation_id = :r ORDER BY id"), {"r": rid}
        )
        return [int(r.id) for r in rows]


def claim(
    db: Database, owner: str = "w1", *, now: datetime = NOW, limit: int = 10
) -> list[jobs.Job]:
    with db.write() as conn:
        return jobs.claim(conn, owner=owner, now=now, lease=LEASE, limit=limit)


def test_only_due_jobs_are_claimed(db: Database) -> None:
    [due] = enqueue(db, due_at=NOW)
    [later] = enqueue(db, due_at=NOW + timedelta(seconds=30))
    assert [j.id for j in claim(db)] == [due]
    assert claim(db, now=NOW + timedelta(seconds=29)) == []
    assert [j.id for j in claim(db, now=NOW + timedelta(seconds=30))] == [later]


def test_claimed_jobs_carry_what_the_executor_needs(db: Database) -> None:
    [job_id] = enqueue(db)
    [job] = claim(db)
    assert job.id == job_id
    assert job.kind == "run_step"
    assert job.step_key == "s0"
    assert job.due_at == NOW


def test_claim_takes_the_earliest_due_first_up_to_the_limit(db: Database) -> None:
    [late] = enqueue(db, due_at=NOW - timedelta(seconds=1))
    [early] = enqueue(db, due_at=NOW - timedelta(seconds=10))
    [mid] = enqueue(db, due_at=NOW - timedelta(seconds=5))
    assert [j.id for j in claim(db, limit=2)] == [early, mid]
    assert [j.id for j in claim(db)] == [late]


def test_a_leased_job_is_not_claimed_again(db: Database) -> None:
    enqueue(db)
    assert len(claim(db, "w1")) == 1
    assert claim(db, "w2") == []
    assert claim(db, "w2", now=NOW + LEASE - timedelta(seconds=1)) == []


def test_a_lapsed_lease_is_claimed_again(db: Database) -> None:
    """A worker that died mid-job: its lease ends and another worker takes the job."""
    [job_id] = enqueue(db)
    claim(db, "w1")
    [again] = claim(db, "w2", now=NOW + LEASE + timedelta(seconds=1))
    assert again.id == job_id
    with db.read() as conn:
        owner = conn.execute(text("SELECT lease_owner FROM jobs")).scalar_one()
    assert owner == "w2"


def test_retry_at_releases_and_reschedules(db: Database) -> None:
    [job_id] = enqueue(db)
    claim(db)
    with db.write() as conn:
        jobs.retry_at(conn, job_id, NOW + timedelta(seconds=30))
    assert claim(db, now=NOW + timedelta(seconds=29)) == []
    assert [j.id for j in claim(db, now=NOW + timedelta(seconds=30))] == [job_id]


def test_finished_jobs_are_gone(db: Database) -> None:
    [job_id] = enqueue(db)
    claim(db)
    with db.write() as conn:
        jobs.finish(conn, job_id)
        assert jobs.pending_count(conn) == 0
    assert claim(db, now=NOW + LEASE * 2) == []


def test_release_dead_frees_only_the_dead_owners_leases(db: Database) -> None:
    dead_job, live_job = enqueue(db, 2)
    claim(db, "dead-worker", limit=1)
    claim(db, "live-worker", limit=1)
    with db.write() as conn:
        freed = jobs.release_dead(conn, lambda owner: owner == "dead-worker")
        assert jobs.release_dead(conn, lambda owner: False) == 0
    assert freed == 1
    # Long before the lease would lapse, the dead worker's job is claimable; the live one's not.
    assert [j.id for j in claim(db, "w3", now=NOW + timedelta(seconds=1))] == [dead_job]
    assert live_job != dead_job


def test_due_count_counts_only_jobs_due_now(db: Database) -> None:
    enqueue(db, due_at=NOW)
    enqueue(db, due_at=NOW + timedelta(minutes=1))
    with db.read() as conn:
        assert jobs.due_count(conn, NOW) == 1
        assert jobs.due_count(conn, NOW + timedelta(minutes=1)) == 2


def test_pending_count_can_leave_out_one_kind(db: Database) -> None:
    with db.write() as conn:
        rid = make_remediation(conn, now=NOW)
        jobs.enqueue(conn, "run", rid, None, due_at=NOW, now=NOW)
        jobs.enqueue(conn, "undo_step", rid, "a", due_at=NOW, now=NOW)
        assert jobs.pending_count(conn) == 2
        assert jobs.pending_count(conn, exclude_kind="undo_step") == 1


def test_concurrent_claimers_never_share_a_job(db: Database) -> None:
    """Eight workers claim from one queue at once: every job is taken exactly once."""
    ids = enqueue(db, 40)
    workers = 8
    barrier = threading.Barrier(workers)

    def work(n: int) -> list[int]:
        barrier.wait()
        taken: list[int] = []
        while batch := claim(db, f"w{n}", limit=3):
            taken.extend(j.id for j in batch)
        return taken

    with ThreadPoolExecutor(workers) as pool:
        taken = [job_id for batch in pool.map(work, range(workers)) for job_id in batch]
    assert sorted(taken) == ids


def test_postgresql_claims_skip_rows_another_transaction_holds(db: Database) -> None:
    """While one worker's claim is uncommitted, another takes the next job, without waiting."""
    if db.is_sqlite:
        pytest.skip("SQLite serializes writers; SKIP LOCKED is PostgreSQL's")
    first, second = enqueue(db, 2)
    with db.engine.connect() as one, db.engine.connect() as two:
        with one.begin():
            [held] = jobs.claim(one, owner="w1", now=NOW, lease=LEASE, limit=1)
            with two.begin():
                # Without SKIP LOCKED this would wait for `one`; fail fast instead of hanging.
                two.execute(text("SET LOCAL lock_timeout = '5s'"))
                [other] = jobs.claim(two, owner="w2", now=NOW, lease=LEASE, limit=1)
                assert jobs.claim(two, owner="w2", now=NOW, lease=LEASE, limit=1) == []
        assert (held.id, other.id) == (first, second)
