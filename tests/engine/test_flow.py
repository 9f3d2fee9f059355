"""The remediation loop on both databases: plan, run, verify, expire, retry, fail, approve."""

from __future__ import annotations

import time

from clampdown.engine.decisions import Request
from clampdown.model import Decision
from tests.conftest import sample
from tests.engine.conftest import AppFactory, drain
from tests.fakes import Reply, WebhookReceiver

BLOCK_AND_NOTIFY = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-and-notify}
spec:
  match: {types: ["API_*"], when: "size(finding.ips) > 0"}
  mode: {mode}
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", reason: "${{ finding.title }}"}
      expires: {expires}
    - id: tell
      uses: notify.send
      if: steps.block.status == "succeeded"
      with: {target: hook, text: "Blocked ${{ finding.ip }}: ${{ finding.title }}"}
"""


def playbook(mode: str = "automatic", expires: str = "1h") -> str:
    return BLOCK_AND_NOTIFY.replace("{mode}", mode).replace("{expires}", expires)


def test_alert_is_blocked_notified_and_verified(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    """A single-IP alert ends succeeded: containment active, decision deny, one webhook call."""
    app = make_app(playbook(), webhook=webhook)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    [planned] = result.remediations
    drain(app)
    rem = app.get_remediation(planned.remediation_id)
    assert rem["state"] == "succeeded"
    assert [s["state"] for s in rem["steps"]] == ["succeeded", "succeeded"]
    assert app.decide(Request(ip="203.0.113.77")).decision is Decision.DENY
    assert app.decide(Request(ip="203.0.113.78")).decision is Decision.ALLOW
    [delivery] = webhook.deliveries
    assert delivery.body["text"].startswith("Blocked 203.0.113.77: ")
    assert delivery.headers["Idempotency-Key"] == rem["steps"][1]["idempotency_key"]
    states = [h["to_state"] for h in rem["history"] if h["step_key"] is None]
    assert states == ["planned", "running", "verifying", "succeeded"]


def test_containment_expires_and_is_undone(make_app: AppFactory, webhook: WebhookReceiver) -> None:
    """An expiring block is lifted on schedule and the remediation ends expired."""
    app = make_app(playbook(expires="1s"), webhook=webhook)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "expired")
    rem = app.get_remediation(rid)
    assert rem["steps"][0]["state"] == "undone"
    assert app.decide(Request(ip="203.0.113.77")).decision is Decision.ALLOW
    assert app.list_containments() == []


def test_duplicate_delivery_is_one_finding(make_app: AppFactory, webhook: WebhookReceiver) -> None:
    """The same alert twice is stored once and planned once."""
    app = make_app(playbook(), webhook=webhook)
    first = app.ingest(sample("defender-rest-suspicious-ip.json"))
    again = app.ingest(sample("defender-rest-suspicious-ip.json"))
    assert first[0].new
    assert not again[0].new
    assert first[0].finding_id == again[0].finding_id
    assert again[0].remediations == []
    assert len(app.list_remediations()) == 1


def test_transient_failures_are_retried_honouring_retry_after(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    """429 with Retry-After, then 503, then 200: three deliveries with one key, step succeeds."""
    webhook.script = [Reply(429, {"Retry-After": "0.2"}), Reply(503)]
    app = make_app(playbook(), webhook=webhook)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    started = time.monotonic()
    drain(app)
    rem = app.get_remediation(result.remediations[0].remediation_id)
    assert rem["state"] == "succeeded"
    assert rem["steps"][1]["attempts"] == 3
    assert len(set(webhook.keys())) == 1
    assert len(webhook.keys()) == 3
    assert time.monotonic() - started >= 0.2


def test_permanent_failure_fails_the_remediation(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    """A 400 is not retried; the step and remediation fail with the reason recorded."""
    webhook.default = Reply(400, body="invalid_payload")
    app = make_app(playbook(), webhook=webhook)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    drain(app)
    rem = app.get_remediation(result.remediations[0].remediation_id)
    assert rem["state"] == "failed"
    assert rem["steps"][1]["state"] == "failed"
    assert "400" in rem["steps"][1]["error"]
    assert "invalid_payload" in rem["steps"][1]["error"]
    assert len(webhook.deliveries) == 1


def test_retries_stop_after_max_attempts(make_app: AppFactory, webhook: WebhookReceiver) -> None:
    """A target that keeps failing is given up after max_attempts, visibly."""
    webhook.default = Reply(503)
    app = make_app(playbook(), webhook=webhook, max_attempts=3)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    drain(app)
    rem = app.get_remediation(result.remediations[0].remediation_id)
    assert rem["state"] == "failed"
    assert "gave up after 3 attempts" in rem["steps"][1]["error"]
    assert len(webhook.deliveries) == 3


def test_approval_mode_waits_then_runs(make_app: AppFactory, webhook: WebhookReceiver) -> None:
    """Nothing runs before approval; the approver is recorded; then the steps run."""
    app = make_app(playbook(mode="approval"), webhook=webhook)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    drain(app)
    assert app.get_remediation(rid)["state"] == "awaiting_approval"
    assert app.list_containments() == []
    app.approve(rid, actor="alice", note="confirmed with the API owner")
    drain(app)
    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded"
    approval = next(h for h in rem["history"] if h["to_state"] == "running")
    assert approval["actor"] == "alice"
    assert "confirmed" in approval["reason"]


def test_rejection_runs_nothing(make_app: AppFactory, webhook: WebhookReceiver) -> None:
    """A rejected remediation never acts."""
    app = make_app(playbook(mode="approval"), webhook=webhook)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    app.reject(rid, actor="bob", reason="known scanner")
    drain(app)
    assert app.get_remediation(rid)["state"] == "rejected"
    assert app.list_containments() == []
    assert webhook.deliveries == []


def test_dry_run_renders_without_acting(make_app: AppFactory, webhook: WebhookReceiver) -> None:
    """Dry run shows the rendered parameters and touches nothing."""
    app = make_app(playbook(mode="dry_run"), webhook=webhook)
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    drain(app)
    rem = app.get_remediation(result.remediations[0].remediation_id)
    assert rem["state"] == "dry_run"
    assert rem["steps"][0]["params"]["ip"] == "203.0.113.77"
    assert app.list_containments() == []
    assert webhook.deliveries == []
