"""Approval policies: approvers, quorum, and what a timeout does (reject, approve, escalate)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from clampdown.api.app import create_app
from clampdown.errors import ConflictError, ForbiddenError, PlaybookError
from clampdown.services import Clampdown
from tests.api.conftest import auth
from tests.conftest import sample
from tests.engine.conftest import AppFactory, drain
from tests.fakes import WebhookReceiver

PLAYBOOK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: approve-first}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: approval
  approval: {approval}
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: 1h
"""


def _app(make_app: AppFactory, approval: str, **kwargs: object) -> tuple[Clampdown, str]:
    app = make_app(PLAYBOOK.replace("{approval}", approval), **kwargs)  # type: ignore[arg-type]
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    return app, result.remediations[0].remediation_id


def _state(app: Clampdown, rid: str) -> str:
    return str(app.get_remediation(rid)["state"])


def test_named_approvers_and_a_quorum(make_app: AppFactory) -> None:
    app, rid = _app(make_app, "{approvers: [alice, token:bob], count: 2}")
    with pytest.raises(ForbiddenError, match="cli:carol is not one of the approvers"):
        app.approve(rid, actor="cli:carol")
    with pytest.raises(ForbiddenError):
        app.reject(rid, actor="cli:carol")
    app.approve(rid, actor="token:alice", note="looks right")
    assert _state(app, rid) == "awaiting_approval"
    assert app.get_remediation(rid)["history"][-1]["reason"] == "approval 1 of 2: looks right"
    with pytest.raises(ConflictError, match="token:alice already approved"):
        app.approve(rid, actor="token:alice")
    app.approve(rid, actor="token:bob")
    drain(app)
    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded"
    approved = next(h for h in rem["history"] if h["reason"].startswith("approved"))
    assert (approved["reason"], approved["actor"]) == ("approved (2 of 2)", "token:bob")


def test_timeout_rejects(make_app: AppFactory) -> None:
    app, rid = _app(make_app, "{timeout: 1s, on_timeout: reject}")
    drain(app, until=lambda: _state(app, rid) == "rejected")
    last = app.get_remediation(rid)["history"][-1]
    assert (last["actor"], last["reason"]) == (
        "timeout",
        "rejected: no decision before the approval timeout",
    )
    assert app.list_containments() == []


def test_timeout_approves(make_app: AppFactory) -> None:
    app, rid = _app(make_app, "{timeout: 1s, on_timeout: approve}")
    drain(app, until=lambda: _state(app, rid) == "succeeded")
    approved = next(
        h for h in app.get_remediation(rid)["history"] if h["reason"].startswith("approved")
    )
    assert approved["actor"] == "timeout"


def test_timeout_escalates_then_rejects(make_app: AppFactory, webhook: WebhookReceiver) -> None:
    app, rid = _app(
        make_app, "{timeout: 1s, on_timeout: escalate, escalate_to: hook}", webhook=webhook
    )
    drain(app, until=lambda: bool(webhook.deliveries))
    [message] = webhook.deliveries
    assert message.body["title"] == "Approval needed: escalated"
    assert rid in message.body["text"]
    assert _state(app, rid) == "awaiting_approval"
    drain(app, until=lambda: _state(app, rid) == "rejected")
    reasons = [h["reason"] for h in app.get_remediation(rid)["history"]]
    assert "approval timed out: escalated to hook" in reasons


def test_a_decision_before_the_timeout_wins(make_app: AppFactory) -> None:
    app, rid = _app(make_app, "{timeout: 1s, on_timeout: reject}")
    app.approve(rid, actor="cli:alice")
    drain(app, until=lambda: _state(app, rid) == "succeeded")
    time.sleep(1.1)  # the timeout job comes due after the decision
    drain(app)
    assert _state(app, rid) == "succeeded"
    assert all(h["actor"] != "timeout" for h in app.get_remediation(rid)["history"])


def test_the_api_answers_403_to_someone_not_allowed(make_app: AppFactory) -> None:
    app, rid = _app(make_app, "{approvers: [someone-else]}")
    with TestClient(create_app(app)) as client:
        response = client.post(f"/v1/remediations/{rid}/approve", headers=auth("approve"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert _state(app, rid) == "awaiting_approval"


@pytest.mark.parametrize(
    ("approval", "problem"),
    [
        ("{timeout: 1h, on_timeout: escalate}", "on_timeout: escalate needs escalate_to"),
        ("{on_timeout: approve}", "on_timeout: approve needs a timeout"),
        ("{count: 0}", "greater than or equal to 1"),
    ],
)
def test_bad_policies_are_load_errors(make_app: AppFactory, approval: str, problem: str) -> None:
    with pytest.raises(PlaybookError, match=problem):
        make_app(PLAYBOOK.replace("{approval}", approval))
