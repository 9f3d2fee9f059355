"""Grouping windows, guided tasks, approval conflicts, step conditions and parameter errors."""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from clampdown.engine import planner
from clampdown.errors import ConflictError, NotFoundError
from clampdown.services import Clampdown
from clampdown.sources import normalize
from clampdown.store import findings
from clampdown.store.tables import RemediationRow, table
from tests.conftest import sample
from tests.engine.conftest import AppFactory, drain
from tests.fakes import WebhookReceiver

IP = "203.0.113.77"

GROUPED_BLOCK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: grouped-block}
spec:
  match: {types: [API_AccessFromSuspiciousIP], when: "size(finding.ips) > 0"}
  group: {by: "${{ finding.type }}/${{ finding.ip }}", window: 1h}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
"""

GUIDED = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: guided-review}
spec:
  match: {types: ["Recommendation_*"], kinds: [recommendation]}
  mode: guided
  steps:
    - id: review
      uses: task.create
      with:
        target: builtin
        title: "Review ${{ finding.title }}"
        steps: [Read it, Fix it]
        owner: api-platform@example.com
        due: 3d
    - id: tell
      uses: notify.send
      with: {target: hook, text: "Task done for ${{ finding.type }}"}
"""

APPROVAL = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: approve-block}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: approval
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
"""

CONDITIONAL = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: conditional}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      if: finding.severity == "low"
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
    - id: tell
      uses: notify.send
      with: {target: hook, text: "block was ${{ steps.block.status }}"}
"""

BAD_PARAMS = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-anything}
spec:
  match: {types: ["Recommendation_*"]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
    - id: tell
      uses: notify.send
      with: {target: hook, text: "never sent"}
"""


def repeat_alert(n: int) -> dict[str, Any]:
    """The suspicious-IP alert again: a new alert id, same type and IP."""
    body = copy.deepcopy(sample("defender-rest-suspicious-ip.json"))
    alert_id = f"repeat-{n}"
    body["name"] = alert_id
    body["id"] = body["id"].rsplit("/", 1)[0] + "/" + alert_id
    body["properties"]["systemAlertId"] = alert_id
    return body


# -- grouping ------------------------------------------------------------------------------


def test_a_repeat_in_the_window_joins_the_open_remediation(make_app: AppFactory) -> None:
    app = make_app(GROUPED_BLOCK)
    [first] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = first.remediations[0].remediation_id
    drain(app)
    [again] = app.ingest(repeat_alert(1))
    assert again.new
    assert again.finding_id != first.finding_id
    [joined] = again.remediations
    assert joined.joined
    assert joined.remediation_id == rid
    drain(app)

    rem = app.get_remediation(rid)
    assert rem["finding_count"] == 2
    assert rem["findings"] == [first.finding_id, again.finding_id]
    assert rem["state"] == "succeeded"
    assert any(
        f"repeat finding {again.finding_id} joined the group" in h["reason"] for h in rem["history"]
    )
    assert len(app.list_remediations()) == 1
    assert len(app.list_containments(include_removed=True)) == 1


def test_a_redelivered_repeat_is_not_counted_twice(make_app: AppFactory) -> None:
    app = make_app(GROUPED_BLOCK)
    [first] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    app.ingest(repeat_alert(1))
    [duplicate] = app.ingest(repeat_alert(1))
    assert not duplicate.new
    assert duplicate.remediations == []
    rem = app.get_remediation(first.remediations[0].remediation_id)
    assert rem["finding_count"] == 2


def test_another_ip_opens_its_own_remediation(make_app: AppFactory) -> None:
    app = make_app(GROUPED_BLOCK)
    [first] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    other = repeat_alert(2)
    other["properties"]["entities"][0]["address"] = "198.51.100.4"
    [second] = app.ingest(other)
    assert not second.remediations[0].joined
    assert second.remediations[0].remediation_id != first.remediations[0].remediation_id


def test_after_the_window_a_repeat_opens_a_new_remediation(make_app: AppFactory) -> None:
    app = make_app(GROUPED_BLOCK)
    [first] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = first.remediations[0].remediation_id
    drain(app)
    # The hour passes.
    rems = table(RemediationRow)
    with app.db.write() as conn:
        conn.execute(update(rems).values(group_until=datetime.now(UTC) - timedelta(seconds=1)))
    [later] = app.ingest(repeat_alert(3))
    [planned] = later.remediations
    assert not planned.joined
    assert planned.remediation_id != rid
    drain(app)
    assert app.get_remediation(rid)["finding_count"] == 1
    fresh = app.get_remediation(planned.remediation_id)
    assert fresh["finding_count"] == 1
    assert fresh["state"] == "succeeded"


def plan_at(app: Clampdown, body: dict[str, Any], now: datetime) -> planner.Planned:
    """Store and plan one alert as if it arrived at `now`."""
    [finding] = normalize(body)
    with app.db.write() as conn:
        finding_id, new = findings.insert_if_new(conn, finding, now=now)
        assert new
        [planned] = planner.plan(conn, finding, finding_id, app.matcher.match(finding), now=now)
    return planned


def test_the_window_is_counted_from_the_first_finding(make_app: AppFactory) -> None:
    """Repeats join up to the end of the window; the first one after it starts over."""
    app = make_app(GROUPED_BLOCK)
    start = datetime.now(UTC)
    first = plan_at(app, repeat_alert(10), start)
    inside = plan_at(app, repeat_alert(11), start + timedelta(minutes=59))
    outside = plan_at(app, repeat_alert(12), start + timedelta(minutes=61))
    assert not first.joined
    assert inside.joined
    assert inside.remediation_id == first.remediation_id
    assert not outside.joined
    assert outside.remediation_id != first.remediation_id


# -- guided tasks --------------------------------------------------------------------------


def test_a_guided_task_holds_the_remediation_until_completed(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    app = make_app(GUIDED, webhook=webhook)
    [result] = app.ingest(sample("recommendation-unauthenticated-endpoint.json"))
    rid = result.remediations[0].remediation_id
    drain(app)

    rem = app.get_remediation(rid)
    assert rem["state"] == "running"
    assert [s["state"] for s in rem["steps"]] == ["waiting", "pending"]
    assert webhook.deliveries == []
    [task] = app.list_tasks()
    assert task["remediation_id"] == rid
    assert task["step_key"] == "review"
    assert task["title"].startswith("Review ")
    assert task["steps"] == ["Read it", "Fix it"]
    assert task["owner"] == "api-platform@example.com"
    assert task["status"] == "open"
    assert rem["steps"][0]["result"]["output"]["task_id"] == task["id"]

    done = app.complete_task(task["id"], actor="carol", note="added validate-jwt")
    assert done["status"] == "done"
    assert done["completed_by"] == "carol"
    assert done["note"] == "added validate-jwt"
    drain(app)

    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded"
    assert [s["state"] for s in rem["steps"]] == ["succeeded", "succeeded"]
    completed = next(h for h in rem["history"] if h["reason"].startswith("task completed"))
    assert completed["actor"] == "carol"
    assert completed["step_key"] == "review"
    assert len(webhook.deliveries) == 1
    assert app.list_tasks() == []
    assert [t["id"] for t in app.list_tasks(status="done")] == [task["id"]]


def test_completing_a_task_twice_is_a_conflict(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    app = make_app(GUIDED, webhook=webhook)
    app.ingest(sample("recommendation-unauthenticated-endpoint.json"))
    drain(app)
    [task] = app.list_tasks()
    app.complete_task(task["id"], actor="carol")
    with pytest.raises(ConflictError, match="already done"):
        app.complete_task(task["id"], actor="dave")
    assert app.list_tasks(status="done")[0]["completed_by"] == "carol"


def test_completing_an_unknown_task_is_not_found(make_app: AppFactory) -> None:
    app = make_app(GUIDED)
    with pytest.raises(NotFoundError):
        app.complete_task("no-such-task", actor="carol")


# -- approvals -----------------------------------------------------------------------------


def test_approving_what_does_not_await_approval_is_a_conflict(make_app: AppFactory) -> None:
    app = make_app(APPROVAL)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    app.approve(rid, actor="alice")
    with pytest.raises(ConflictError, match="not awaiting_approval"):
        app.approve(rid, actor="bob")
    with pytest.raises(ConflictError):
        app.reject(rid, actor="bob")
    approvals = [
        h for h in app.get_remediation(rid)["history"] if h["from_state"] == "awaiting_approval"
    ]
    assert [h["actor"] for h in approvals] == ["alice"]


def test_approving_an_unknown_remediation_is_not_found(make_app: AppFactory) -> None:
    app = make_app(APPROVAL)
    with pytest.raises(NotFoundError):
        app.approve("0" * 32, actor="alice")
    with pytest.raises(NotFoundError):
        app.reject("0" * 32, actor="alice")


def test_approving_a_rejected_remediation_is_a_conflict(make_app: AppFactory) -> None:
    app = make_app(APPROVAL)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    app.reject(rid, actor="bob")
    with pytest.raises(ConflictError):
        app.approve(rid, actor="alice")
    drain(app)
    assert app.get_remediation(rid)["state"] == "rejected"
    assert app.list_containments() == []


# -- conditions and parameters -------------------------------------------------------------


def test_a_false_condition_skips_the_step_and_later_steps_run(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    app = make_app(CONDITIONAL, webhook=webhook)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    drain(app)
    rem = app.get_remediation(rid)
    assert [s["state"] for s in rem["steps"]] == ["skipped", "succeeded"]
    skipped = next(h for h in rem["history"] if h["step_key"] == "block")
    assert "was false" in skipped["reason"]
    assert rem["state"] == "succeeded"
    assert app.list_containments() == []
    [delivery] = webhook.deliveries
    assert delivery.body["text"] == "block was skipped"


def test_invalid_rendered_parameters_fail_the_step_naming_the_parameter(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    """A recommendation has no IP: `ip` renders empty and the step fails, saying so."""
    app = make_app(BAD_PARAMS, webhook=webhook)
    [result] = app.ingest(sample("recommendation-unauthenticated-endpoint.json"))
    assert result.ips == []
    rid = result.remediations[0].remediation_id
    drain(app)
    rem = app.get_remediation(rid)
    block, tell = rem["steps"]
    assert block["state"] == "failed"
    assert block["error"].startswith("parameters: ip:")
    assert tell["state"] == "skipped"
    assert rem["state"] == "failed"
    assert any(h["reason"].startswith("step block failed: parameters: ip:") for h in rem["history"])
    assert app.list_containments() == []
    assert webhook.deliveries == []


def test_a_repeat_planned_while_the_first_is_uncommitted_joins_it(
    make_app: AppFactory,
) -> None:
    """Two API processes plan the same threat at once: still one remediation."""
    app = make_app(GROUPED_BLOCK)
    now = datetime.now(UTC)
    planned: dict[str, planner.Planned] = {}
    first_planned, release = threading.Event(), threading.Event()

    def first() -> None:
        [finding] = normalize(repeat_alert(20))
        with app.db.write() as conn:
            finding_id, _ = findings.insert_if_new(conn, finding, now=now)
            [planned["first"]] = planner.plan(
                conn, finding, finding_id, app.matcher.match(finding), now=now
            )
            first_planned.set()
            release.wait(10)

    def second() -> None:
        planned["second"] = plan_at(app, repeat_alert(21), now)

    one = threading.Thread(target=first)
    one.start()
    assert first_planned.wait(10)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.5)  # a correct planner waits here for the first transaction
    release.set()
    one.join(10)
    two.join(10)
    assert planned["second"].remediation_id == planned["first"].remediation_id
    assert len(app.list_remediations()) == 1
