"""A write the group-commit writer rolls back and runs again starts from the committed state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clampdown.engine.decisions import DecisionCache
from clampdown.engine.executor import Executor, _Call, _Run
from clampdown.model import StepState
from clampdown.store import jobs
from tests.conftest import sample
from tests.engine.conftest import AppFactory
from tests.engine.playbooks import NOTIFY
from tests.fakes import WebhookReceiver


def test_advancing_again_after_a_rollback_starts_the_step_once(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    """The first attempt is rolled back (as when another write of its batch fails)."""
    app = make_app(NOTIFY, webhook=webhook)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    now = datetime.now(UTC)
    with app.db.write() as conn:
        [job] = jobs.claim(conn, owner="w", now=now, lease=timedelta(minutes=1), limit=1)
    executor = Executor(app.db, app.config, DecisionCache(), session=None)  # type: ignore[arg-type]
    run = _Run(job)

    with app.db.engine.connect() as conn:
        transaction = conn.begin()
        executor._advance(conn, run, None)
        transaction.rollback()
    with app.db.write() as conn:
        run, nxt = executor._advance(conn, run, None)

    assert isinstance(nxt, _Call)
    assert nxt.step["attempts"] == 1
    rem = app.get_remediation(rid)
    [step] = rem["steps"]
    assert step["state"] == StepState.RUNNING.value
    assert step["attempts"] == 1
    starts = [h for h in rem["history"] if h["step_key"] == "tell"]
    assert [(h["from_state"], h["to_state"]) for h in starts] == [("pending", "running")]


def test_a_worker_that_lost_its_lease_stops_without_touching_anything(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    """Another worker took the job over: this one must not start the step as well."""
    from sqlalchemy import update

    from clampdown.store.tables import JobRow, table

    app = make_app(NOTIFY, webhook=webhook)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    now = datetime.now(UTC)
    with app.db.write() as conn:
        [job] = jobs.claim(conn, owner="w1", now=now, lease=timedelta(minutes=1), limit=1)
        conn.execute(update(table(JobRow)).values(lease_owner="w2"))
    executor = Executor(app.db, app.config, DecisionCache(), session=None)  # type: ignore[arg-type]
    with app.db.write() as conn:
        _, nxt = executor._advance(conn, _Run(job), None)
    assert nxt is None
    [step] = app.get_remediation(rid)["steps"]
    assert step["state"] == StepState.PENDING.value
    assert step["attempts"] == 0
