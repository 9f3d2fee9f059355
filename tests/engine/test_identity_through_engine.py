"""Identity actions and alert write-back through the engine, against FakeGraph and FakeDefender."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clampdown.testing.defender import FakeDefender
from clampdown.testing.graph import FakeGraph
from tests.conftest import sample, suspicious_ip_alert
from tests.engine.conftest import AppFactory, drain

ALICE = "alice@contoso.com"
BOB = "bob@contoso.com"

DISABLE = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: disable-user}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: disable
      uses: identity.disable
      with: {target: entra, user: "{user}"}
      expires: 1s
"""

CUT_OFF = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: cut-off-user}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: sessions
      uses: identity.revoke_sessions
      with: {target: entra, user: "{user}"}
    - id: risk
      uses: identity.confirm_compromised
      with: {target: entra, users: ["{user}"]}
"""

RESOLVE = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: resolve-at-source}
spec:
  match: {types: [API_ParameterEnumeration, API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: resolve
      uses: finding.update
      with: {target: source, state: resolved, comment: "Handled by Clampdown: ${{ finding.ip }}"}
"""


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_SECRET", "graph-secret")
    monkeypatch.setenv("DEFENDER_SECRET", "defender-secret")


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph(client_secret="graph-secret")
    fake.add_user(ALICE)
    fake.add_user(BOB, enabled=False)
    fake.add_alert(sample("graph-alert-param-enum.json"))
    with fake.running() as running:
        yield running


def _graph_target(graph: FakeGraph) -> dict[str, Any]:
    return {
        "type": "graph",
        "tenant_id": "tenant",
        "client_id": "client",
        "client_secret": {"env": "GRAPH_SECRET"},
        "login_url": graph.url,
        "graph_url": graph.url,
    }


def test_a_disabled_user_is_enabled_again_when_the_step_expires(
    make_app: AppFactory, graph: FakeGraph
) -> None:
    app = make_app(DISABLE.replace("{user}", ALICE), targets={"entra": _graph_target(graph)})
    rid = app.ingest(suspicious_ip_alert(1, "203.0.113.7"))[0].remediations[0].remediation_id
    drain(app, until=lambda: app.get_remediation(rid)["state"] in ("succeeded", "failed"))
    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded", rem
    assert graph.user(ALICE)["accountEnabled"] is False
    assert rem["steps"][0]["result"]["summary"] == f"user {ALICE} disabled"
    reads = graph.requests_to("GET", f"/users/{ALICE}")
    assert len(reads) >= 2  # the read before the write, and verification

    drain(app, until=lambda: app.get_remediation(rid)["state"] == "expired")
    assert graph.user(ALICE)["accountEnabled"] is True
    assert [r.body for r in graph.requests_to("PATCH")] == [
        {"accountEnabled": False},
        {"accountEnabled": True},
    ]


def test_a_user_disabled_beforehand_stays_disabled_after_undo(
    make_app: AppFactory, graph: FakeGraph
) -> None:
    app = make_app(DISABLE.replace("{user}", BOB), targets={"entra": _graph_target(graph)})
    rid = app.ingest(suspicious_ip_alert(1, "203.0.113.7"))[0].remediations[0].remediation_id
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "expired")
    rem = app.get_remediation(rid)
    assert rem["steps"][0]["result"]["summary"] == f"user {BOB} was already disabled"
    assert graph.user(BOB)["accountEnabled"] is False
    assert graph.requests_to("PATCH") == []


def test_sessions_are_revoked_and_the_user_confirmed_compromised(
    make_app: AppFactory, graph: FakeGraph
) -> None:
    app = make_app(CUT_OFF.replace("{user}", ALICE), targets={"entra": _graph_target(graph)})
    rid = app.ingest(suspicious_ip_alert(1, "203.0.113.7"))[0].remediations[0].remediation_id
    drain(app, until=lambda: app.get_remediation(rid)["state"] in ("succeeded", "failed"))
    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded", rem
    alice = graph.user(ALICE)["id"]
    assert graph.revocations == [alice]
    risky = graph.risky_user(alice)
    assert risky is not None
    assert risky["riskState"] == "confirmedCompromised"
    assert [s["result"]["summary"] for s in rem["steps"]] == [
        f"sign-in sessions of {ALICE} revoked",
        "1 user confirmed compromised",
    ]


def test_finding_update_resolves_the_graph_alert_at_its_source(
    make_app: AppFactory, graph: FakeGraph
) -> None:
    app = make_app(RESOLVE, targets={"source": _graph_target(graph)})
    rid = app.ingest(sample("graph-alert-param-enum.json"))[0].remediations[0].remediation_id
    drain(app, until=lambda: app.get_remediation(rid)["state"] in ("succeeded", "failed"))
    assert app.get_remediation(rid)["state"] == "succeeded"
    alert = graph.alert("da637551227677560813_-961444813")
    assert alert["status"] == "resolved"
    assert [c["comment"] for c in alert["comments"]] == ["Handled by Clampdown: 198.51.100.150"]


def test_finding_update_resolves_the_defender_rest_alert_at_its_source(
    make_app: AppFactory,
) -> None:
    fixture = sample("defender-rest-suspicious-ip.json")
    defender = FakeDefender(
        client_secret="defender-secret", subscription_id="6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10"
    )
    defender.add_alert(fixture)
    with defender.running():
        target = {
            "type": "defender",
            "tenant_id": "tenant",
            "client_id": "client",
            "client_secret": {"env": "DEFENDER_SECRET"},
            "login_url": defender.url,
            "management_url": defender.url,
        }
        app = make_app(RESOLVE, targets={"source": target})
        rid = app.ingest(fixture)[0].remediations[0].remediation_id
        drain(app, until=lambda: app.get_remediation(rid)["state"] in ("succeeded", "failed"))
    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded", rem
    assert defender.status_of(fixture["id"]) == "Resolved"
    assert rem["steps"][0]["result"]["summary"].endswith(
        "set to resolved at source (Defender for Cloud keeps no comment)"
    )
