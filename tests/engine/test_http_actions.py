"""flow.trigger and notify.send against a real HTTP receiver: bodies, failures, secrecy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clampdown.actions.http import TargetHttp
from clampdown.errors import PreconditionError
from clampdown.services import Clampdown, IngestedFinding
from tests.conftest import sample, suspicious_ip_alert
from tests.engine.conftest import AppFactory, drain
from tests.engine.playbooks import NOTIFY
from tests.fakes import Reply, WebhookReceiver

FLOW = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: start-flow}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: flow
      uses: flow.trigger
      with:
        target: remediation-flow
        body:
          alert: "${{ finding.source_id }}"
          ip: "${{ finding.ip }}"
          ips: "${{ finding.ips }}"
"""

SIGNATURE = "sig=do-not-leak-this-signature"


def flow_app(make_app: AppFactory, receiver: WebhookReceiver, tmp_path: Path) -> Clampdown:
    secret = tmp_path / "flow-url"
    secret.write_text(f"{receiver.url}?api-version=2016-10-01&sp=run&sv=1.0&{SIGNATURE}")
    targets = {"remediation-flow": {"type": "flow", "url": {"file": str(secret)}, "timeout": 1}}
    return make_app(FLOW, targets=targets)


def run_once(app: Clampdown) -> tuple[IngestedFinding, dict[str, Any]]:
    """Ingest the suspicious-IP sample, let the engine finish, return it and its remediation."""
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    drain(app)
    return result, app.get_remediation(result.remediations[0].remediation_id)


def test_flow_receives_the_rendered_body_with_types_kept(
    make_app: AppFactory, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """202 from the flow: the step succeeds and the body keeps lists as lists."""
    webhook.default = Reply(202, body="")
    result, rem = run_once(flow_app(make_app, webhook, tmp_path))
    assert rem["state"] == "succeeded"
    [delivery] = webhook.deliveries
    assert delivery.body == {
        "alert": result.source_id,
        "ip": "203.0.113.77",
        "ips": ["203.0.113.77"],
    }
    assert delivery.headers["Idempotency-Key"] == rem["steps"][0]["idempotency_key"]


def test_a_flow_answer_is_kept_for_later_steps(
    make_app: AppFactory, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """A flow with a Response action answers what it likes; the step keeps it."""
    webhook.default = Reply(200, body='{"ticket": "CHG0042", "approved": true}')
    _, rem = run_once(flow_app(make_app, webhook, tmp_path))
    assert rem["state"] == "succeeded"
    assert rem["steps"][0]["result"]["output"] == {
        "status": 200,
        "answer": {"ticket": "CHG0042", "approved": True},
    }


def test_flow_schema_rejection_is_permanent(
    make_app: AppFactory, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """400 (the flow's schema validation) is not retried."""
    webhook.default = Reply(400, body='{"error": {"code": "TriggerInputSchemaMismatch"}}')
    _, rem = run_once(flow_app(make_app, webhook, tmp_path))
    assert rem["state"] == "failed"
    assert "400" in rem["steps"][0]["error"]
    assert len(webhook.deliveries) == 1


def test_flow_gateway_timeout_is_not_sent_twice(
    make_app: AppFactory, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """504 may mean the flow ran: a non-idempotent trigger fails instead of firing again."""
    webhook.default = Reply(504, body="")
    _, rem = run_once(flow_app(make_app, webhook, tmp_path))
    assert rem["state"] == "failed"
    assert "not sent again" in rem["steps"][0]["error"]
    assert len(webhook.deliveries) == 1


def test_flow_throttling_is_retried(
    make_app: AppFactory, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    """429 means the flow did not run: retried, and the step then succeeds."""
    webhook.script = [Reply(429, {"Retry-After": "0"}, body="")]
    webhook.default = Reply(202, body="")
    _, rem = run_once(flow_app(make_app, webhook, tmp_path))
    assert rem["state"] == "succeeded"
    assert len(webhook.deliveries) == 2


def test_flow_url_signature_never_appears_in_records(make_app: AppFactory, tmp_path: Path) -> None:
    """A refused connection is reported by target name; the signed URL stays secret."""
    receiver = WebhookReceiver()
    with receiver.running():
        app = flow_app(make_app, receiver, tmp_path)
    # The receiver is gone: every attempt is refused.
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    drain(app)
    rem = app.get_remediation(result.remediations[0].remediation_id)
    assert rem["state"] == "failed"
    text = repr(rem)
    assert "remediation-flow" in text
    assert SIGNATURE not in text
    assert "sig=" not in text


async def test_outbound_calls_only_reach_the_targets_address() -> None:
    """A URL on another host or port than the configured target's is refused before sending."""
    http = TargetHttp(None, ["http://127.0.0.1:9/hook"], "hook")  # type: ignore[arg-type]
    for url in ("http://127.0.0.2:9/hook", "http://127.0.0.1:10/hook", "https://127.0.0.1:9/"):
        with pytest.raises(PreconditionError, match="outside its address"):
            await http.post_json(url, {}, headers={}, timeout=1)


def test_a_webhook_that_answers_too_late_is_not_called_again(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    """A timeout after sending may have delivered: notify.send fails rather than repeat."""
    webhook.default = Reply(200, delay=2.5)  # the hook target's timeout is 2 s
    _, rem = run_once(make_app(NOTIFY, webhook=webhook))
    assert rem["state"] == "failed"
    assert "timed out" in rem["steps"][0]["error"]
    assert "not sent again" in rem["steps"][0]["error"]
    assert len(webhook.deliveries) == 1


def test_a_rate_limited_target_queues_calls_instead_of_failing_them(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    """Ten alerts at once through a target allowing 2 calls/s: all delivered, none failed."""
    app = make_app(
        NOTIFY,
        targets={
            "hook": {"type": "webhook", "url": webhook.url, "rate_limit": 2, "timeout": 2},
            "builtin": {"type": "builtin", "timeout": 2},
        },
        lease_seconds=8,
    )
    rids = [
        app.ingest(suspicious_ip_alert(n, f"203.0.113.{n}"))[0].remediations[0].remediation_id
        for n in range(10)
    ]
    drain(app, timeout=20)
    states = [app.get_remediation(r)["state"] for r in rids]
    assert states == ["succeeded"] * 10
    assert len(webhook.deliveries) == 10
    reasons = [h["reason"] for r in rids for h in app.get_remediation(r)["history"]]
    # With an 8 s lease a call waits at most 3 s in line; later ones were given a later turn.
    assert any("is at its rate limit; its turn comes in" in reason for reason in reasons)
    attempts = [app.get_remediation(r)["steps"][0]["attempts"] for r in rids]
    assert attempts == [1] * 10
