"""A guided task finished before its step is recorded as waiting does not strand the step."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from clampdown.engine.decisions import DecisionCache
from clampdown.engine.executor import Executor, _Call, _Run
from clampdown.store import jobs
from tests.conftest import sample
from tests.engine.conftest import AppFactory
from tests.engine.test_grouping_and_tasks import GUIDED
from tests.fakes import WebhookReceiver


def test_a_task_completed_during_the_call_lets_the_remediation_go_on(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    app = make_app(GUIDED, webhook=webhook)
    [result] = app.ingest(sample("recommendation-unauthenticated-endpoint.json"))
    rid = result.remediations[0].remediation_id
    with app.db.write() as conn:
        [job] = jobs.claim(
            conn, owner="w", now=datetime.now(UTC), lease=timedelta(minutes=1), limit=1
        )
    executor = Executor(app.db, app.config, DecisionCache(), session=None)  # type: ignore[arg-type]
    with app.db.write() as conn:
        run, call = executor._advance(conn, _Run(job), None)
    assert isinstance(call, _Call)
    outcome = asyncio.run(executor._call(run, call))
    assert outcome.result is not None
    # The person is quick: the task is done before the engine records the step as waiting.
    app.complete_task(outcome.result.output["task_id"], actor="alice")
    with app.db.write() as conn:
        run, nxt = executor._advance(conn, run, (call, outcome))
    assert isinstance(nxt, _Call)
    assert nxt.step["key"] == "tell"
    steps = {s["key"]: s["state"] for s in app.get_remediation(rid)["steps"]}
    assert steps["review"] == "succeeded"
