"""The detector's later word on a finding, through the real engine and the default pack.

A recommendation reported Healthy closes its guided remediation as verified by the detector;
an alert reported Resolved or Dismissed is recorded, and undoes its containment when the
`closing.undo_on` option says so.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clampdown.engine.decisions import Request
from clampdown.engine.detector import DISMISSED
from clampdown.model import Decision
from clampdown.services import Clampdown
from clampdown.store import jobs
from clampdown.testing.graph import FakeGraph
from clampdown.testing.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.closing.conftest import PackApp, assessment, defender_alert, graph_alert
from tests.conftest import sample
from tests.engine.conftest import drain

DETECTOR = "detector:defender"
HEALTHY = "the detector reports the recommendation Healthy"
IP = "203.0.113.77"


def _history(rem: dict[str, Any], count: int) -> list[tuple[Any, ...]]:
    return [
        (h["step_key"], h["from_state"], h["to_state"], h["reason"], h["actor"])
        for h in rem["history"][-count:]
    ]


def _step(rem: dict[str, Any], key: str) -> str:
    return str(next(s["state"] for s in rem["steps"] if s["key"] == key))


def _followed(item: Any) -> list[tuple[str, str, str]]:
    return [(f.remediation_id, f.state, f.did) for f in item.followed_up]


def _effectiveness(app: Clampdown) -> Any:
    return app.effectiveness(since=datetime.now(UTC) - timedelta(hours=1)).overall


def _guided(app: Clampdown) -> tuple[str, dict[str, Any]]:
    """An unhealthy recommendation, its guided remediation waiting on its open task."""
    [item] = app.ingest(assessment("Unhealthy"))
    [planned] = item.remediations
    assert planned.playbook == "secure-unauthenticated-endpoint"
    drain(app)
    rem = app.get_remediation(planned.remediation_id)
    assert (rem["state"], _step(rem, "authenticate")) == ("running", "waiting")
    [task] = app.list_tasks()
    return planned.remediation_id, task


def _contained(app: Clampdown, payload: dict[str, Any]) -> str:
    """An alert whose automatic playbook contained its IP."""
    [item] = app.ingest(payload)
    [planned] = item.remediations
    rid = planned.remediation_id
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "succeeded")
    assert len(app.list_containments()) == 1
    return rid


# -- recommendations -----------------------------------------------------------------------


def test_healthy_closes_the_guided_remediation_as_verified(make_pack_app: PackApp) -> None:
    app = make_pack_app()
    rid, task = _guided(app)

    [again] = app.ingest(assessment("Healthy"))

    assert (again.new, again.changed) == (False, "unhealthy -> healthy")
    assert _followed(again) == [(rid, "succeeded", "closed")]
    drain(app)
    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded"
    assert _history(rem, 3) == [
        (None, "running", "running", HEALTHY, DETECTOR),
        ("authenticate", "waiting", "succeeded", f"task done: {HEALTHY}", DETECTOR),
        (None, "running", "succeeded", "verified by the detector", DETECTOR),
    ]
    assert _step(rem, "authenticate") == "succeeded"
    done = app.get_task(task["id"])
    assert (done["status"], done["completed_by"], done["note"]) == ("done", DETECTOR, HEALTHY)
    assert app.list_tasks() == []
    assert app.get_finding(again.finding_id)["status"] == "healthy"
    assert _effectiveness(app).automatic == 1

    [repeat] = app.ingest(assessment("Healthy"))

    assert (repeat.new, repeat.changed, repeat.followed_up) == (False, None, [])
    assert app.get_remediation(rid)["history"] == rem["history"]
    assert app.pending_work() == 0


def test_not_applicable_closes_it_too_and_says_so(make_pack_app: PackApp) -> None:
    app = make_pack_app()
    rid, task = _guided(app)

    [again] = app.ingest(assessment("NotApplicable"))

    assert again.changed == "unhealthy -> notapplicable"
    says = "the detector reports the recommendation not applicable"
    rem = app.get_remediation(rid)
    assert _history(rem, 3) == [
        (None, "running", "running", says, DETECTOR),
        ("authenticate", "waiting", "succeeded", f"task done: {says}", DETECTOR),
        (None, "running", "succeeded", "not applicable, according to the detector", DETECTOR),
    ]
    assert app.get_task(task["id"])["completed_by"] == DETECTOR


PAGE_THEN_TASK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: page-then-fix}
spec:
  match: {types: [Recommendation_UnauthenticatedEndpoint]}
  mode: guided
  steps:
    - id: page
      uses: notify.send
      with: {target: pager, text: "Unauthenticated endpoint ${{ finding.api.id }}"}
    - id: fix
      uses: task.create
      with: {target: builtin, title: "Require authentication"}
    - id: after
      uses: notify.send
      with: {target: pager, text: "Fixed"}
"""


def test_closed_by_the_detector_resolves_its_page(
    make_pack_app: PackApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The close job runs as when the engine ends a remediation; steps not started are skipped."""
    monkeypatch.setenv("PD_ROUTING_KEY", ROUTING_KEY)
    with FakePagerDuty().running() as pager:
        target = {
            "type": "pagerduty",
            "routing_key": {"env": "PD_ROUTING_KEY"},
            "events_url": pager.events_url,
            "timeout": 2,
        }
        app = make_pack_app(PAGE_THEN_TASK, targets={"pager": target})
        [item] = app.ingest(assessment("Unhealthy"))
        rid = item.remediations[0].remediation_id
        drain(app)
        assert [i.state for i in pager.incidents] == ["triggered"]

        app.ingest(assessment("Healthy"))
        drain(app, until=lambda: [i.state for i in pager.incidents] == ["resolved"])

    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded"
    assert [(s["key"], s["state"]) for s in rem["steps"]] == [
        ("page", "succeeded"),
        ("fix", "succeeded"),
        ("after", "skipped"),
    ]
    assert ("after", "pending", "skipped", f"not needed: {HEALTHY}", DETECTOR) in _history(rem, 10)


def test_fixed_before_approval_is_rejected_with_nothing_run(make_pack_app: PackApp) -> None:
    """retire-unused-endpoint waits for approval: the fix at the source leaves nothing to do."""
    app = make_pack_app()
    payload = copy.deepcopy(sample("recommendation-unused-endpoint.json"))
    [item] = app.ingest(payload)
    [planned] = item.remediations
    assert planned.state == "awaiting_approval"
    payload["properties"]["status"]["code"] = "Healthy"

    [again] = app.ingest(payload)

    assert _followed(again) == [(planned.remediation_id, "rejected", "rejected")]
    rem = app.get_remediation(planned.remediation_id)
    assert _history(rem, 1) == [
        (
            None,
            "awaiting_approval",
            "rejected",
            f"rejected: resolved at the source before approval ({HEALTHY}); nothing to approve",
            DETECTOR,
        )
    ]
    assert {s["state"] for s in rem["steps"]} == {"skipped"}
    figures = _effectiveness(app)
    assert figures.outcomes == {"rejected": 1}
    # Nobody acknowledged it: the detector closed it first.
    assert figures.time_to_acknowledge.count == 0


def test_a_report_waits_while_a_step_is_being_called(make_pack_app: PackApp) -> None:
    app = make_pack_app()
    [item] = app.ingest(assessment("Unhealthy"))
    rid = item.remediations[0].remediation_id
    now = datetime.now(UTC)
    with app.db.write() as conn:
        [job] = jobs.claim(conn, owner="busy", now=now, lease=timedelta(minutes=5), limit=10)
    assert job.kind == "run"

    [again] = app.ingest(assessment("Healthy"))

    assert _followed(again) == [(rid, "running", "deferred")]
    assert app.get_remediation(rid)["state"] == "running"
    with app.db.write() as conn:
        # The busy worker gives its job back; the engine and the deferred report go on.
        jobs.retry_at(conn, job.id, now)
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "succeeded")
    rem = app.get_remediation(rid)
    assert _history(rem, 1) == [
        (None, "running", "succeeded", "verified by the detector", DETECTOR)
    ]
    assert [t["completed_by"] for t in app.list_tasks(status=None)] == [DETECTOR]


# -- alerts --------------------------------------------------------------------------------


def test_dismissal_is_recorded_and_the_block_kept_by_default(make_pack_app: PackApp) -> None:
    app = make_pack_app()
    rid = _contained(app, defender_alert())

    [again] = app.ingest(defender_alert("Dismissed"))

    assert again.changed == "active -> dismissed"
    assert _followed(again) == [(rid, "succeeded", "recorded")]
    assert _history(app.get_remediation(rid), 1) == [
        (None, "succeeded", "succeeded", DISMISSED, DETECTOR)
    ]
    assert len(app.list_containments()) == 1
    assert app.decide(Request(ip=IP)).decision is Decision.DENY
    figures = _effectiveness(app)
    assert (figures.overridden, figures.automatic) == (0, 1)


def test_dismissal_undoes_the_block_when_configured(make_pack_app: PackApp) -> None:
    app = make_pack_app(undo_on=["dismissed"])
    rid = _contained(app, defender_alert())

    [again] = app.ingest(defender_alert("Dismissed"))

    assert _followed(again) == [(rid, "succeeded", "undo requested")]
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "rolled_back")
    assert app.list_containments() == []
    assert app.decide(Request(ip=IP)).decision is Decision.ALLOW
    rem = app.get_remediation(rid)
    assert _step(rem, "block") == "undone"
    requested = f"undo requested: {DISMISSED}"
    assert _history(rem, 4) == [
        (None, "succeeded", "succeeded", DISMISSED, DETECTOR),
        ("block", "succeeded", "succeeded", requested, DETECTOR),
        ("block", "succeeded", "undone", f"undone early ({requested})", DETECTOR),
        (
            None,
            "succeeded",
            "rolled_back",
            f"a containment was undone early: {DISMISSED}",
            DETECTOR,
        ),
    ]
    # A dismissal is a person's false-positive verdict, given in the detector: an override.
    figures = _effectiveness(app)
    assert (figures.contained, figures.overridden, figures.automatic) == (1, 1, 1)


@pytest.mark.parametrize(
    ("status", "undo_on", "end", "overridden"),
    [
        ("Resolved", [], "succeeded", 0),
        ("Resolved", ["dismissed"], "succeeded", 0),
        ("Resolved", ["resolved"], "rolled_back", 0),
        ("Dismissed", ["resolved"], "succeeded", 0),
        ("Dismissed", ["resolved", "dismissed"], "rolled_back", 1),
    ],
)
def test_which_statuses_undo(
    make_pack_app: PackApp, status: str, undo_on: list[str], end: str, overridden: int
) -> None:
    app = make_pack_app(undo_on=undo_on)
    rid = _contained(app, defender_alert())

    [again] = app.ingest(defender_alert(status))

    drain(app, until=lambda: app.get_remediation(rid)["state"] == end)
    says = f"the detector reports the alert {status}"
    rem = app.get_remediation(rid)
    assert next(h["reason"] for h in rem["history"] if h["actor"] == DETECTOR) == says
    assert len(app.list_containments()) == (0 if end == "rolled_back" else 1)
    assert _effectiveness(app).overridden == overridden
    assert again.followed_up[0].did == ("undo requested" if end == "rolled_back" else "recorded")


@pytest.mark.parametrize(
    ("classification", "undo_on", "says", "overridden"),
    [
        (None, ["resolved"], "the detector reports the alert Resolved", 0),
        ("falsePositive", ["dismissed"], f"{DISMISSED} (resolved as a false positive)", 1),
    ],
)
def test_graph_resolved_alert_undoes_the_throttle(
    make_pack_app: PackApp,
    classification: str | None,
    undo_on: list[str],
    says: str,
    overridden: int,
) -> None:
    app = make_pack_app(undo_on=undo_on)
    rid = _contained(app, graph_alert())

    [again] = app.ingest(graph_alert("resolved", classification=classification))

    assert again.changed == "new -> resolved"
    assert _followed(again) == [(rid, "succeeded", "undo requested")]
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "rolled_back")
    assert app.list_containments() == []
    rem = app.get_remediation(rid)
    assert _history(rem, 1) == [
        (None, "succeeded", "rolled_back", f"a containment was undone early: {says}", DETECTOR)
    ]
    assert _effectiveness(app).overridden == overridden


def test_graph_resolution_is_only_recorded_by_default(make_pack_app: PackApp) -> None:
    app = make_pack_app()
    rid = _contained(app, graph_alert())

    [again] = app.ingest(graph_alert("resolved"))

    assert _followed(again) == [(rid, "succeeded", "recorded")]
    assert _history(app.get_remediation(rid), 1) == [
        (None, "succeeded", "succeeded", "the detector reports the alert Resolved", DETECTOR)
    ]
    assert len(app.list_containments()) == 1


def test_a_grouped_remediation_is_undone_once_every_alert_is(make_pack_app: PackApp) -> None:
    """throttle-ip-on-api groups the alerts of one IP: one resolved alert is not enough."""
    app = make_pack_app(undo_on=["resolved"])
    [first] = app.ingest(graph_alert(n=1))
    [second] = app.ingest(graph_alert(n=2))
    rid = first.remediations[0].remediation_id
    assert second.remediations[0].remediation_id == rid
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "succeeded")

    [one] = app.ingest(graph_alert("resolved", n=1))

    assert _followed(one) == [(rid, "succeeded", "recorded")]
    still = f"finding {second.finding_id} of this remediation is still open"
    assert _history(app.get_remediation(rid), 1)[0][3] == (
        f"the detector reports the alert Resolved; not acted on: {still}"
    )
    assert len(app.list_containments()) == 1

    [two] = app.ingest(graph_alert("resolved", n=2))

    assert _followed(two) == [(rid, "succeeded", "undo requested")]
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "rolled_back")
    assert app.list_containments() == []


def test_a_status_that_asks_nothing_is_only_stored(make_pack_app: PackApp) -> None:
    app = make_pack_app(undo_on=["resolved", "dismissed"])
    rid = _contained(app, defender_alert())
    before = app.get_remediation(rid)["history"]

    [again] = app.ingest(defender_alert("InProgress"))

    assert (again.changed, again.followed_up) == ("active -> inprogress", [])
    assert app.get_remediation(rid)["history"] == before
    assert app.get_finding(again.finding_id)["status"] == "inprogress"


THROTTLE_AND_RESOLVE = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: throttle-and-resolve}
spec:
  match: {types: [API_ParameterEnumeration]}
  mode: automatic
  steps:
    - id: throttle
      uses: gateway.throttle
      with: {target: builtin, ip: "${{ finding.ip }}", rate: 60, period: 1m}
      expires: 1h
    - id: resolve
      uses: finding.update
      with: {target: source, state: resolved}
"""


def test_a_status_set_by_the_remediation_itself_is_not_acted_on(
    make_pack_app: PackApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The playbook resolves the alert at its source; reading it back must not lift the throttle."""
    monkeypatch.setenv("GRAPH_SECRET", "graph-secret")
    with FakeGraph(client_secret="graph-secret").running() as graph:
        alert_id = graph.add_alert(graph_alert())
        target = {
            "type": "graph",
            "tenant_id": "tenant",
            "client_id": "client",
            "client_secret": {"env": "GRAPH_SECRET"},
            "login_url": graph.url,
            "graph_url": graph.url,
        }
        app = make_pack_app(THROTTLE_AND_RESOLVE, targets={"source": target}, undo_on=["resolved"])
        rid = _contained(app, graph_alert())
        echoed = graph.alert(alert_id)
    assert echoed["status"] == "resolved"

    [again] = app.ingest(echoed)

    assert _followed(again) == [(rid, "succeeded", "recorded")]
    assert _history(app.get_remediation(rid), 1)[0][3] == (
        "the detector reports the alert Resolved; not acted on: this remediation's step "
        "resolve set that status"
    )
    assert len(app.list_containments()) == 1
