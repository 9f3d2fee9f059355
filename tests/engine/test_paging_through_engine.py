"""notify.send through the engine: a PagerDuty page resolved when the remediation ends, a repeat
after a crash that opens nothing twice, and chat messages that are never sent twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from clampdown.actions.contract import Briefing
from clampdown.actions.http import TargetHttp
from clampdown.messages.model import compose
from clampdown.secrets import SecretRef
from clampdown.services import Clampdown
from clampdown.store import remediations
from clampdown.targets.pagerduty import PagerDutyDriver
from clampdown.targets.settings import PagerDutyTarget
from clampdown.testing.pagerduty import ROUTING_KEY, FakePagerDuty
from clampdown.testing.slack import FakeSlack
from clampdown.testing.teams import FakeTeams
from tests.conftest import suspicious_ip_alert
from tests.engine.conftest import AppFactory, drain
from tests.engine.test_recovery import die_mid_call, lapsed

IP = "203.0.113.9"
PAGE_AND_BLOCK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: page-and-block}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: page
      uses: notify.send
      with: {target: pager, text: "Blocking ${{ finding.ip }} for a second"}
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", reason: "paging test"}
      expires: 1s
"""
TELL = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: tell-chat}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: tell
      uses: notify.send
      with: {target: chat, text: "Suspicious access from ${{ finding.ip }}"}
"""


@pytest.fixture
def pager(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePagerDuty]:
    monkeypatch.setenv("PD_ROUTING_KEY", ROUTING_KEY)
    with FakePagerDuty().running() as fake:
        yield fake


def crash_mid_call(app: Clampdown, rid: str, key: str, params: dict[str, Any]) -> None:
    """A worker died during the call: the step is running with the parameters it was sent
    with (recorded in the same transaction, before the call), and its job's lease lapsed."""
    die_mid_call(app, rid, key, owner="elsewhere:1:dead", lease_until=lapsed())
    full = {"title": "", "data": {}, **params}
    with app.db.write() as conn:
        assert remediations.update_step(conn, rid, key, expect_state="running", params=full)


def _pager_app(make_app: AppFactory, pager: FakePagerDuty) -> Clampdown:
    target = {
        "type": "pagerduty",
        "routing_key": {"env": "PD_ROUTING_KEY"},
        "events_url": pager.events_url,
        "timeout": 2,
    }
    return make_app(PAGE_AND_BLOCK, targets={"pager": target})


def _resolved(app: Clampdown, rid: str, pager: FakePagerDuty) -> bool:
    return app.get_remediation(rid)["state"] == "expired" and any(
        i.state == "resolved" for i in pager.incidents
    )


def test_one_page_is_triggered_and_resolved_when_the_remediation_expires(
    make_app: AppFactory, pager: FakePagerDuty
) -> None:
    app = _pager_app(make_app, pager)
    rid = app.ingest(suspicious_ip_alert(1, IP))[0].remediations[0].remediation_id
    drain(app, until=lambda: _resolved(app, rid, pager))
    rem = app.get_remediation(rid)
    page = next(s for s in rem["steps"] if s["key"] == "page")
    dedup_key = f"clampdown-{page['idempotency_key']}"
    assert page["result"]["output"] == {"dedup_key": dedup_key}
    assert page["result"]["closed"] is True
    [incident] = pager.incidents
    assert (incident.dedup_key, incident.triggers) == (dedup_key, 1)
    assert incident.summary.endswith(f": Blocking {IP} for a second")
    assert incident.resolution.startswith(f"Remediation {rid} expired: page: sent to pager; ")
    assert f"block: block ip {IP}" in incident.resolution
    assert [e.action for e in pager.events] == ["trigger", "resolve"]
    assert ROUTING_KEY not in json.dumps(rem, default=str)


def test_a_page_repeated_after_a_crash_keeps_one_incident(
    make_app: AppFactory, pager: FakePagerDuty
) -> None:
    app = _pager_app(make_app, pager)
    rid = app.ingest(suspicious_ip_alert(2, IP))[0].remediations[0].remediation_id
    crash_mid_call(app, rid, "page", {"target": "pager", "text": f"Blocking {IP} for a second"})
    with app.db.read() as conn:
        step = remediations.get_step(conn, rid, "page")
    assert step is not None
    # The trigger had reached PagerDuty before the worker died.
    asyncio.run(_page_directly(pager, step["idempotency_key"]))
    drain(app, until=lambda: _resolved(app, rid, pager))
    page = next(s for s in app.get_remediation(rid)["steps"] if s["key"] == "page")
    assert (page["state"], page["attempts"]) == ("succeeded", 2)
    [incident] = pager.incidents
    assert incident.triggers == 2
    assert incident.state == "resolved"
    assert [e.action for e in pager.events] == ["trigger", "trigger", "resolve"]
    assert {e.dedup_key for e in pager.events} == {f"clampdown-{step['idempotency_key']}"}


async def _page_directly(pager: FakePagerDuty, key: str) -> None:
    settings = PagerDutyTarget(
        routing_key=SecretRef(env="PD_ROUTING_KEY"), events_url=pager.events_url
    )
    briefing = Briefing(remediation_id="r", playbook="page-and-block", state="running", finding={})
    async with aiohttp.ClientSession() as session:
        driver = PagerDutyDriver(
            "pager", settings, TargetHttp(session, settings.origins(), "pager")
        )
        await driver.send(compose("", f"Blocking {IP} for a second", briefing), key=key)


@pytest.mark.parametrize("kind", ["slack", "teams"])
def test_a_chat_message_found_running_after_a_crash_is_failed_not_resent(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    with FakeSlack().running() as slack, FakeTeams().running() as teams:
        monkeypatch.setenv("CHAT_URL", slack.webhook_url if kind == "slack" else teams.legacy_url)
        app = make_app(TELL, targets={"chat": {"type": kind, "url": {"env": "CHAT_URL"}}})
        rid = app.ingest(suspicious_ip_alert(3, IP))[0].remediations[0].remediation_id
        crash_mid_call(app, rid, "tell", {"target": "chat", "text": f"Suspicious access from {IP}"})
        drain(app)
        assert slack.requests == []
        assert teams.posts == []
    rem = app.get_remediation(rid)
    [step] = rem["steps"]
    assert (step["state"], step["attempts"]) == ("failed", 1)
    assert "not idempotent" in step["error"]
    assert rem["state"] == "failed"


@pytest.mark.parametrize("kind", ["slack", "teams"])
def test_a_chat_message_is_delivered_once(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    with FakeSlack().running() as slack, FakeTeams().running() as teams:
        monkeypatch.setenv("CHAT_URL", slack.webhook_url if kind == "slack" else teams.legacy_url)
        app = make_app(TELL, targets={"chat": {"type": kind, "url": {"env": "CHAT_URL"}}})
        rid = app.ingest(suspicious_ip_alert(4, IP))[0].remediations[0].remediation_id
        drain(app)
        delivered = len(slack.messages) + len(teams.cards)
        secret = slack.token if kind == "slack" else teams.signature
    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded"
    assert delivered == 1
    assert secret not in json.dumps(rem, default=str)
