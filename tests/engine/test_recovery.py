"""Crash semantics without killing a process: the database is left as a dead worker leaves it."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from clampdown.engine.decisions import Request
from clampdown.model import Decision
from clampdown.services import Clampdown
from clampdown.store import containments, remediations
from clampdown.store.tables import JobRow, table
from tests.conftest import sample
from tests.engine.conftest import AppFactory, drain
from tests.engine.playbooks import BLOCK, NOTIFY
from tests.fakes import WebhookReceiver

IP = "203.0.113.77"


def die_mid_call(app: Clampdown, rid: str, key: str, *, owner: str, lease_until: datetime) -> None:
    """Leave the step `running` (committed before the call) and its job leased by `owner`."""
    now = datetime.now(UTC)
    with app.db.write() as conn:
        assert remediations.update_step(
            conn, rid, key, expect_state="pending", state="running", attempts=1, started_at=now
        )
        remediations.record(
            conn, rid, key, "pending", "running", reason="attempt 1", actor="engine", now=now
        )
        # The job that was running the step (whatever its kind) keeps the dead worker's lease.
        jobs = table(JobRow)
        leased = conn.execute(
            update(jobs)
            .where(jobs.c.remediation_id == rid)
            .values(lease_owner=owner, lease_until=lease_until)
        ).rowcount
    assert leased == 1


def lapsed() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=1)


def test_non_idempotent_step_found_running_is_failed_not_resent(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    """notify.send may have been delivered before the crash: it is failed visibly, not resent."""
    app = make_app(NOTIFY, webhook=webhook)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    die_mid_call(app, rid, "tell", owner="elsewhere:1:dead", lease_until=lapsed())
    drain(app)
    rem = app.get_remediation(rid)
    [step] = rem["steps"]
    assert step["state"] == "failed"
    assert "may or may not have reached the target" in step["error"]
    assert "not idempotent" in step["error"]
    assert step["attempts"] == 1
    assert rem["state"] == "failed"
    assert webhook.deliveries == []
    failed = [h for h in rem["history"] if h["step_key"] == "tell" and h["to_state"] == "failed"]
    assert [h["from_state"] for h in failed] == ["running"]
    assert app.pending_work() == 0


def test_idempotent_step_found_running_is_rerun_once(make_app: AppFactory) -> None:
    """gateway.block is re-run after the crash, and its idempotency key keeps one containment."""
    app = make_app(BLOCK)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    die_mid_call(app, rid, "block", owner="elsewhere:1:dead", lease_until=lapsed())
    # The call had reached the list before the worker died.
    with app.db.read() as conn:
        step = remediations.get_step(conn, rid, "block")
    assert step is not None
    with app.db.write() as conn:
        first_id, _ = containments.add(
            conn,
            {
                "key": step["idempotency_key"],
                "kind": "block",
                "subject_type": "ip",
                "subject": IP,
                "scope": "*",
                "rate": None,
                "period_seconds": None,
                "reason": "crash test",
                "remediation_id": rid,
                "created_by": "engine",
                "expires_at": datetime.now(UTC) + timedelta(hours=1),
            },
            now=datetime.now(UTC),
        )
    drain(app)
    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded"
    [step] = rem["steps"]
    assert step["state"] == "succeeded"
    assert step["attempts"] == 2
    assert step["result"]["output"]["containment_id"] == first_id
    [active] = app.list_containments()
    assert active["id"] == first_id
    assert len(app.list_containments(include_removed=True)) == 1
    assert app.decide(Request(ip=IP)).decision is Decision.DENY


def test_idempotent_step_found_running_without_effect_is_completed(make_app: AppFactory) -> None:
    """If the call never reached the list, the re-run makes the one containment."""
    app = make_app(BLOCK)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    die_mid_call(app, rid, "block", owner="elsewhere:1:dead", lease_until=lapsed())
    drain(app)
    assert app.get_remediation(rid)["state"] == "succeeded"
    [active] = app.list_containments()
    assert active["subject"] == IP
    assert active["remediation_id"] == rid


def test_a_dead_local_workers_lease_is_released_at_start(make_app: AppFactory) -> None:
    """A worker on this host whose process is gone: its jobs run now, not when the lease ends."""
    app = make_app(BLOCK)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    owner = f"{socket.gethostname()}:{gone.pid}:1:deadbeef"
    die_mid_call(app, rid, "block", owner=owner, lease_until=datetime.now(UTC) + timedelta(hours=1))
    drain(app)
    assert app.get_remediation(rid)["state"] == "succeeded"
    assert len(app.list_containments()) == 1
