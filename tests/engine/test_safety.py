"""Safety rails no playbook can bypass: protected assets and the blast-radius budget."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from clampdown.config import BudgetConfig, Config
from clampdown.engine.decisions import Request
from clampdown.engine.safety import BudgetCounter
from clampdown.model import Decision
from tests.conftest import suspicious_ip_alert
from tests.engine.conftest import AppFactory, drain
from tests.fakes import WebhookReceiver

BLOCK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-ip}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", scope: "{scope}"}
      expires: 1h
"""


def _block(scope: str = "*") -> str:
    return BLOCK.replace("{scope}", scope)


def test_a_protected_address_is_never_contained(make_app: AppFactory) -> None:
    app = make_app(_block(), safety={"protected": {"ips": ["203.0.113.0/28"]}})
    [result] = app.ingest(suspicious_ip_alert(1, "203.0.113.7"))
    rid = result.remediations[0].remediation_id
    drain(app)
    rem = app.get_remediation(rid)
    [step] = rem["steps"]
    assert step["state"] == "skipped"
    block = next(h for h in rem["history"] if h["step_key"] == "block")
    assert block["reason"] == (
        "refused by a safety rail: ip 203.0.113.7 is protected "
        "(safety.protected.ips 203.0.113.0/28)"
    )
    assert app.list_containments() == []
    assert app.decide(Request(ip="203.0.113.7")).decision is Decision.ALLOW


def test_a_protected_api_is_never_contained(make_app: AppFactory) -> None:
    app = make_app(_block("payments-api"), safety={"protected": {"apis": ["payments*"]}})
    rid = app.ingest(suspicious_ip_alert(1, "198.51.100.7"))[0].remediations[0].remediation_id
    drain(app)
    assert app.get_remediation(rid)["steps"][0]["state"] == "skipped"
    assert app.list_containments() == []


def test_the_budget_pauses_automation_announces_it_and_a_person_can_go_ahead(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    app = make_app(
        _block(),
        webhook=webhook,
        safety={"budget": {"window": "1h", "per_target": 2}, "announce": "hook"},
    )
    rids = [
        app.ingest(suspicious_ip_alert(n, f"198.51.100.{n}"))[0].remediations[0].remediation_id
        for n in range(1, 5)
    ]
    drain(app)
    states = [app.get_remediation(r)["state"] for r in rids]
    assert states == ["succeeded", "succeeded", "awaiting_approval", "awaiting_approval"]
    paused = app.get_remediation(rids[2])["history"][-1]
    assert paused["actor"] == "safety"
    assert paused["reason"].startswith(
        "blast-radius budget reached: 2 containments on target builtin in 1h"
    )
    # Announced once for the window, not once per paused remediation.
    [announcement] = webhook.deliveries
    assert announcement.body["title"] == "Automatic containment paused"
    assert rids[2] in announcement.body["text"]

    app.approve(rids[2], actor="analyst")
    drain(app)
    assert app.get_remediation(rids[2])["state"] == "succeeded"
    assert app.decide(Request(ip="198.51.100.3")).decision is Decision.DENY


def test_automation_resumes_when_the_window_has_room(make_app: AppFactory) -> None:
    app = make_app(_block(), safety={"budget": {"window": "1s", "per_target": 1}})
    first = app.ingest(suspicious_ip_alert(1, "198.51.100.1"))[0].remediations[0].remediation_id
    second = app.ingest(suspicious_ip_alert(2, "198.51.100.2"))[0].remediations[0].remediation_id
    drain(app)
    assert app.get_remediation(first)["state"] == "succeeded"
    assert app.get_remediation(second)["state"] == "awaiting_approval"
    time.sleep(1.1)
    third = app.ingest(suspicious_ip_alert(3, "198.51.100.3"))[0].remediations[0].remediation_id
    drain(app)
    assert app.get_remediation(third)["state"] == "succeeded"


def test_the_budget_counts_per_playbook_too(make_app: AppFactory) -> None:
    other = _block().replace("name: block-ip", "name: block-ip-too")
    app = make_app(
        _block() + "---\n" + other,
        safety={"budget": {"window": "1h", "per_target": None, "per_playbook": 1}},
    )
    rid_a, rid_b = (
        r.remediation_id for r in app.ingest(suspicious_ip_alert(1, "198.51.100.1"))[0].remediations
    )
    drain(app)
    # Each playbook has room for one: both contain, and the next alert waits for both.
    assert {app.get_remediation(r)["state"] for r in (rid_a, rid_b)} == {"succeeded"}
    later = app.ingest(suspicious_ip_alert(2, "198.51.100.2"))[0].remediations
    drain(app)
    assert {app.get_remediation(r.remediation_id)["state"] for r in later} == {"awaiting_approval"}


def test_the_replay_counter_trips_and_recovers_like_the_engine() -> None:
    counter = BudgetCounter(BudgetConfig(window="10m", per_target=2))
    start = datetime(2026, 11, 26, tzinfo=UTC)
    admitted = [
        counter.admit("builtin", "p", start + timedelta(minutes=m)) for m in (0, 1, 2, 3, 11, 12)
    ]
    assert admitted == [True, True, False, False, True, True]
    assert not counter.admit("builtin", "p", start + timedelta(minutes=13))
    assert counter.admit("edge", "p", start + timedelta(minutes=3))


def test_announce_must_name_a_target() -> None:
    with pytest.raises(ValueError, match=r"safety\.announce names no configured target"):
        Config.model_validate({"safety": {"announce": "nowhere"}})
