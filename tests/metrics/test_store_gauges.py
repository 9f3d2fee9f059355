"""Gauges read from the store at scrape time: exact counts of constructed rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from clampdown.metrics.store import StoreCollector
from clampdown.store import containments, findings, jobs, remediations, tasks
from clampdown.store.db import Database
from tests.metrics.conftest import Samples, samples, value
from tests.store.conftest import make_finding

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PLAYBOOKS = ("alpha", "beta")
TARGETS = ("builtin", "kong-prod")


def remediation(
    conn: Connection, playbook: str, state: str, *, waiting_since: datetime | None = None
) -> str:
    """A stored remediation in `state`; waiting ones with the history of when they began."""
    created = waiting_since or NOW - timedelta(hours=5)
    finding_id, _ = findings.insert_if_new(conn, make_finding(uuid.uuid4().hex), now=created)
    rid = uuid.uuid4().hex
    remediations.create(
        conn,
        {
            "id": rid,
            "playbook": playbook,
            "mode": "approval",
            "state": state,
            "finding_id": finding_id,
            "group_key": rid,
            "group_until": None,
            "finding_count": 1,
            "created_at": created,
            "updated_at": created,
        },
    )
    remediations.record_path(
        conn, rid, None, [("planned", "matched", created), (state, "mode", created)], actor="t"
    )
    return rid


def containment(
    conn: Connection,
    target: str,
    kind: str,
    *,
    expires_at: datetime | None,
    lifted: bool = False,
) -> None:
    values = {
        "key": uuid.uuid4().hex,
        "target": target,
        "kind": kind,
        "subject_type": "ip",
        "subject": "203.0.113.7",
        "scope": "*",
        "rate": None,
        "period_seconds": None,
        "reason": "test",
        "remediation_id": None,
        "created_by": "test",
        "expires_at": expires_at,
    }
    cid, _ = containments.add(conn, values, now=NOW - timedelta(hours=1))
    if lifted:
        containments.remove(conn, cid, reason="lifted", now=NOW - timedelta(minutes=1))


def task(conn: Connection, *, done: bool) -> None:
    values = {
        "key": uuid.uuid4().hex,
        "remediation_id": None,
        "step_key": None,
        "title": "t",
        "why": "w",
        "steps": [],
        "links": [],
        "evidence": [],
        "owner": "o",
        "due_at": None,
    }
    tid, _ = tasks.create(conn, values, now=NOW)
    if done:
        tasks.complete(conn, tid, by="p", note="", now=NOW)


def scrape(db: Database) -> Samples:
    collector = StoreCollector(db, playbooks=lambda: PLAYBOOKS, targets=TARGETS, clock=lambda: NOW)
    return samples(collector.collect())


def test_remediations_by_state_and_playbook(db: Database) -> None:
    with db.write() as conn:
        for playbook, state, n in [
            ("alpha", "succeeded", 3),
            ("alpha", "failed", 1),
            ("beta", "succeeded", 2),
            ("beta", "running", 1),
            ("retired-playbook", "succeeded", 4),  # no longer loaded: "other"
            ("another-old-one", "expired", 1),
        ]:
            for _ in range(n):
                remediation(conn, playbook, state)
    got = scrape(db)
    assert value(got, "clampdown_store_up") == 1
    assert value(got, "clampdown_remediations", state="succeeded") == 9
    assert value(got, "clampdown_remediations", state="failed") == 1
    assert value(got, "clampdown_remediations", state="running") == 1
    assert value(got, "clampdown_remediations", state="expired") == 1
    assert value(got, "clampdown_remediations", state="rejected") == 0  # every state shows
    by_playbook = {
        (dict(labels)["playbook"], dict(labels)["state"]): n
        for (name, labels), n in got.items()
        if name == "clampdown_remediations_by_playbook"
    }
    assert by_playbook == {
        ("alpha", "succeeded"): 3,
        ("alpha", "failed"): 1,
        ("beta", "succeeded"): 2,
        ("beta", "running"): 1,
        ("other", "succeeded"): 4,
        ("other", "expired"): 1,
    }


def test_pending_approvals_and_the_longest_wait(db: Database) -> None:
    with db.write() as conn:
        oldest = remediation(
            conn, "alpha", "awaiting_approval", waiting_since=NOW - timedelta(minutes=90)
        )
        remediation(conn, "beta", "awaiting_approval", waiting_since=NOW - timedelta(minutes=10))
        remediation(conn, "alpha", "succeeded", waiting_since=NOW - timedelta(days=3))
        # A vote on the oldest one (recorded as a transition to the same state) is no new wait.
        remediations.record(
            conn,
            oldest,
            None,
            "awaiting_approval",
            "awaiting_approval",
            reason="approval 1 of 2",
            actor="token:alice",
            now=NOW - timedelta(minutes=1),
        )
    got = scrape(db)
    assert value(got, "clampdown_pending_approvals") == 2
    assert value(got, "clampdown_oldest_pending_approval_seconds") == 90 * 60


def test_no_pending_approval_reads_zero(db: Database) -> None:
    got = scrape(db)
    assert value(got, "clampdown_pending_approvals") == 0
    assert value(got, "clampdown_oldest_pending_approval_seconds") == 0


def test_active_containments_by_target_and_kind(db: Database) -> None:
    later, earlier = NOW + timedelta(hours=1), NOW - timedelta(minutes=5)
    with db.write() as conn:
        containment(conn, "builtin", "block", expires_at=later)
        containment(conn, "builtin", "block", expires_at=None)
        containment(conn, "builtin", "throttle", expires_at=later)
        containment(conn, "builtin", "block", expires_at=later, lifted=True)
        containment(conn, "builtin", "block", expires_at=earlier)  # past expiry, not yet lifted
        containment(conn, "kong-prod", "disable", expires_at=later)
        containment(conn, "old-gateway", "block", expires_at=later)  # not configured: "other"
    got = scrape(db)
    active = {
        (dict(labels)["target"], dict(labels)["kind"]): n
        for (name, labels), n in got.items()
        if name == "clampdown_containments_active"
    }
    assert active == {
        ("builtin", "block"): 2,
        ("builtin", "throttle"): 1,
        ("kong-prod", "disable"): 1,
        ("other", "block"): 1,
    }


def test_open_tasks_and_due_jobs(db: Database) -> None:
    with db.write() as conn:
        for done in (False, False, True):
            task(conn, done=done)
        rid = remediation(conn, "alpha", "running")
        jobs.enqueue(conn, "run", rid, None, due_at=NOW - timedelta(seconds=1), now=NOW)
        jobs.enqueue(conn, "run", rid, None, due_at=NOW, now=NOW)
        jobs.enqueue(conn, "undo_step", rid, "s", due_at=NOW + timedelta(hours=1), now=NOW)
    got = scrape(db)
    assert value(got, "clampdown_tasks_open") == 2
    assert value(got, "clampdown_jobs_due") == 2


def test_an_unreadable_store_reports_store_up_zero() -> None:
    broken = Database("sqlite:////nonexistent-dir/none.db")
    try:
        got = scrape(broken)
    finally:
        broken.dispose()
    assert got == {("clampdown_store_up", frozenset()): 0}
