"""ticket.create through the engine: opened once per correlation id, resolved when it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from clampdown.actions.contract import Briefing
from clampdown.actions.http import TargetHttp
from clampdown.messages import adf
from clampdown.messages.model import compose
from clampdown.secrets import SecretRef
from clampdown.services import Clampdown
from clampdown.targets.driver import Ticket
from clampdown.targets.servicenow import ServiceNowDriver
from clampdown.targets.settings import ServiceNowTarget
from clampdown.testing.jira import FakeJira
from clampdown.testing.servicenow import FakeServiceNow
from clampdown.testing.webhook import Reply, WebhookReceiver
from tests.conftest import suspicious_ip_alert
from tests.engine.conftest import AppFactory, drain
from tests.engine.test_recovery import die_mid_call, lapsed

PASSWORD = "sn-password"
TOKEN = "jira-api-token"
IP = "203.0.113.7"

PLAYBOOK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: {name}}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: ticket
      uses: ticket.create
      with:
        target: itsm
        title: "Suspicious access from ${{ finding.ip }}"
        text: "Clampdown blocks the client for a while."
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}"}
      expires: {expires}
"""

FAILING = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: ticket-then-fail}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: ticket
      uses: ticket.create
      with: {target: itsm, title: "Suspicious access from ${{ finding.ip }}"}
    - id: tell
      uses: notify.send
      with: {target: hook, text: "Suspicious access from ${{ finding.ip }}"}
"""


def _playbook(name: str = "ticket-and-block", expires: str = "1s") -> str:
    return PLAYBOOK.replace("{name}", name).replace("{expires}", expires)


@pytest.fixture
def instance(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServiceNow]:
    monkeypatch.setenv("SN_PASSWORD", PASSWORD)
    with FakeServiceNow("clampdown", PASSWORD).running() as fake:
        yield fake


def _servicenow(instance: FakeServiceNow) -> dict[str, Any]:
    return {
        "type": "servicenow",
        "instance_url": instance.url,
        "username": "clampdown",
        "password": {"env": "SN_PASSWORD"},
        "timeout": 2,
    }


def _step(app: Clampdown, rid: str, key: str) -> dict[str, Any]:
    return next(s for s in app.get_remediation(rid)["steps"] if s["key"] == key)


def _closed(app: Clampdown, rid: str) -> bool:
    result = _step(app, rid, "ticket")["result"] or {}
    return bool(result.get("closed"))


def test_a_ticket_is_opened_and_resolved_when_the_remediation_expires(
    make_app: AppFactory, instance: FakeServiceNow
) -> None:
    app = make_app(_playbook(), targets={"itsm": _servicenow(instance)})
    rid = app.ingest(suspicious_ip_alert(1, IP))[0].remediations[0].remediation_id
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "succeeded")
    [incident] = instance.incidents()
    assert incident["correlation_id"] == "alert-1"  # the alert's id at its source
    assert incident["short_description"] == f"Suspicious access from {IP}"
    assert incident["state"] == "1"  # the block still holds: the ticket stays open
    step = _step(app, rid, "ticket")
    assert step["result"]["output"] == {
        "ticket_id": incident["sys_id"],
        "number": "INC0010001",
        "url": f"{instance.url}/incident.do?sys_id={incident['sys_id']}",
        "reused": False,
    }
    assert step["result"]["summary"] == "opened INC0010001"

    drain(app, until=lambda: _closed(app, rid))
    rem = app.get_remediation(rid)
    assert rem["state"] == "expired"
    resolved = instance.incident(incident["sys_id"])
    assert resolved["state"] == "6"
    assert resolved["close_code"] == "Resolved by request"
    notes = resolved["close_notes"]
    assert notes.startswith(
        f"Clampdown remediation {rid} (ticket-and-block) ended: expired.\n"
        "Reason: every temporary containment expired and was undone\n\n"
        "Done:\n- ticket: opened INC0010001\n- block: "
    )
    assert IP in notes.rsplit("- block: ", 1)[1]
    assert any(
        h["step_key"] == "ticket" and h["reason"] == "closed: the remediation ended"
        for h in rem["history"]
    )
    assert len(instance.calls("POST")) == 1


def test_a_jira_issue_takes_the_done_transition_when_the_remediation_expires(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIRA_TOKEN", TOKEN)
    with FakeJira("bot@example.com", TOKEN).running() as site:
        target = {
            "type": "jira",
            "site_url": site.url,
            "email": "bot@example.com",
            "api_token": {"env": "JIRA_TOKEN"},
            "project_key": "SEC",
            "timeout": 2,
        }
        app = make_app(_playbook(), targets={"itsm": target})
        rid = app.ingest(suspicious_ip_alert(1, IP))[0].remediations[0].remediation_id
        drain(app, until=lambda: _closed(app, rid))
        [issue] = site.issues()
        assert site.status(issue["key"]) == "Done"
        [comment] = site.comments(issue["key"])
    assert adf.text_of(comment).startswith(f"Clampdown remediation {rid} (ticket-and-block) ended")
    output = _step(app, rid, "ticket")["result"]["output"]
    assert output["number"] == issue["key"] == "SEC-1"
    assert app.get_remediation(rid)["state"] == "expired"


def test_two_remediations_of_one_alert_share_one_ticket(
    make_app: AppFactory, instance: FakeServiceNow
) -> None:
    """Two playbooks act on the same alert (same source_id): the second reuses the ticket."""
    playbooks = _playbook("first", "1h") + "---" + _playbook("second", "1h")
    app = make_app(playbooks, targets={"itsm": _servicenow(instance)})
    [ingested] = app.ingest(suspicious_ip_alert(1, IP))
    rids = [r.remediation_id for r in ingested.remediations]
    assert len(rids) == 2
    drain(app, until=lambda: all(app.get_remediation(r)["state"] == "succeeded" for r in rids))
    [incident] = instance.incidents()
    outputs = [_step(app, r, "ticket")["result"]["output"] for r in rids]
    assert {o["ticket_id"] for o in outputs} == {incident["sys_id"]}
    assert sorted(o["reused"] for o in outputs) == [False, True]
    [note] = instance.work_notes(incident["sys_id"])
    assert note.startswith("Seen again: Clampdown remediation")
    assert incident["state"] == "1"
    # The same alert delivered again is the same finding: no remediation, no ticket.
    [again] = app.ingest(suspicious_ip_alert(1, IP))
    assert not again.new
    assert again.remediations == []
    assert len(instance.calls("POST")) == 1


def test_a_crash_after_creating_makes_no_second_ticket(
    make_app: AppFactory, instance: FakeServiceNow
) -> None:
    """The worker died after ServiceNow made the incident, before the step recorded it."""
    app = make_app(_playbook(expires="1h"), targets={"itsm": _servicenow(instance)})
    rid = app.ingest(suspicious_ip_alert(1, IP))[0].remediations[0].remediation_id
    die_mid_call(app, rid, "ticket", owner="elsewhere:1:dead", lease_until=lapsed())
    sent = asyncio.run(_open_as_the_dead_worker(instance, rid))
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "succeeded")
    step = _step(app, rid, "ticket")
    assert step["attempts"] == 2
    assert step["result"]["output"]["ticket_id"] == sent
    assert step["result"]["output"]["reused"] is False
    assert len(instance.calls("POST")) == 1
    assert instance.work_notes(sent) == []


async def _open_as_the_dead_worker(instance: FakeServiceNow, rid: str) -> str:
    settings = ServiceNowTarget(
        instance_url=instance.url, username="clampdown", password=SecretRef(env="SN_PASSWORD")
    )
    briefing = Briefing(
        remediation_id=rid, playbook="ticket-and-block", state="running", finding={}
    )
    message = compose(f"Suspicious access from {IP}", "", briefing)
    async with aiohttp.ClientSession() as session:
        driver = ServiceNowDriver("itsm", settings, TargetHttp(session, [instance.url], "itsm"))
        ref = await driver.open_ticket(Ticket(message.title, message, "alert-1"))
    return ref.id


def test_a_failed_remediation_resolves_its_ticket(
    make_app: AppFactory, instance: FakeServiceNow
) -> None:
    with WebhookReceiver(Reply(status=400, body="bad request")).running() as hook:
        app = make_app(FAILING, webhook=hook, targets={"itsm": _servicenow(instance)})
        rid = app.ingest(suspicious_ip_alert(1, IP))[0].remediations[0].remediation_id
        drain(app, until=lambda: _closed(app, rid))
    rem = app.get_remediation(rid)
    assert rem["state"] == "failed"
    [incident] = instance.incidents()
    assert incident["state"] == "6"
    assert incident["close_notes"].startswith(
        f"Clampdown remediation {rid} (ticket-then-fail) ended: failed.\nReason: step tell failed"
    )
    assert "- ticket: opened INC0010001" in incident["close_notes"]
