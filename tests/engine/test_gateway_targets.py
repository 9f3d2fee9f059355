"""Gateway verbs through the engine on a real target type (the Kong fake): the whole loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clampdown.engine.decisions import Request
from clampdown.model import Decision
from clampdown.targets.kong import KongDriver
from clampdown.testing.kong import FakeKong
from tests.conftest import suspicious_ip_alert
from tests.engine.conftest import AppFactory, drain

PLAYBOOK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-at-kong}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: edge, ip: "${{ finding.ip }}", scope: "service:orders"}
      expires: {expires}
"""


@pytest.fixture
def kong() -> Iterator[FakeKong]:
    with FakeKong().running() as fake:
        fake.add_service("orders")
        yield fake


def _deny(kong: FakeKong) -> list[str]:
    plugins = kong.plugins("ip-restriction", service="orders")
    return plugins[0]["config"]["deny"] if plugins else []


def test_block_is_applied_verified_merged_and_undone_on_expiry(
    make_app: AppFactory, kong: FakeKong
) -> None:
    app = make_app(
        PLAYBOOK.replace("{expires}", "2s"),
        targets={"edge": {"type": "kong", "admin_url": kong.url}},
    )
    rids = [
        app.ingest(suspicious_ip_alert(n, ip))[0].remediations[0].remediation_id
        for n, ip in enumerate(["203.0.113.7", "203.0.113.8"])
    ]
    drain(app, until=lambda: all(app.get_remediation(r)["state"] == "succeeded" for r in rids))
    assert _deny(kong) == ["203.0.113.7", "203.0.113.8"]
    rem = app.get_remediation(rids[0])
    assert rem["steps"][0]["result"]["summary"].endswith("at edge")
    assert any(h["reason"] == "verified" for h in rem["history"])
    [listed] = [c for c in app.list_containments() if c["subject"] == "203.0.113.7"]
    assert listed["target"] == "edge"
    # Kong enforces this one; the decision API's built-in list is not involved.
    assert app.decide(Request(ip="203.0.113.7")).decision is Decision.ALLOW

    drain(app, until=lambda: all(app.get_remediation(r)["state"] == "expired" for r in rids))
    assert kong.plugins("ip-restriction") == []
    assert app.list_containments() == []


def test_a_refused_containment_fails_the_step_and_leaves_no_record(
    make_app: AppFactory, kong: FakeKong
) -> None:
    kong.add_plugin("ip-restriction", {"allow": ["10.0.0.0/8"]}, service="orders")
    app = make_app(
        PLAYBOOK.replace("{expires}", "1h"),
        targets={"edge": {"type": "kong", "admin_url": kong.url}},
    )
    rid = app.ingest(suspicious_ip_alert(1, "203.0.113.7"))[0].remediations[0].remediation_id
    drain(app)
    rem = app.get_remediation(rid)
    assert rem["state"] == "failed"
    assert "does not own" in rem["steps"][0]["error"]
    assert app.list_containments() == []


def test_transient_errors_are_retried_and_unreadable_state_fails_verification(
    make_app: AppFactory, kong: FakeKong
) -> None:
    app = make_app(
        PLAYBOOK.replace("{expires}", "1h"),
        targets={"edge": {"type": "kong", "admin_url": kong.url}},
    )
    kong.fail_next(method="POST", status=429, retry_after=0, times=2)
    rid = app.ingest(suspicious_ip_alert(1, "203.0.113.7"))[0].remediations[0].remediation_id
    drain(app)
    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded"
    assert rem["steps"][0]["attempts"] == 3


def test_a_containment_the_gateway_does_not_hold_fails_verification(
    make_app: AppFactory, kong: FakeKong, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def not_held(self: KongDriver, spec: object) -> bool:
        return False

    monkeypatch.setattr(KongDriver, "enforces", not_held)
    app = make_app(
        PLAYBOOK.replace("{expires}", "1h"),
        targets={"edge": {"type": "kong", "admin_url": kong.url}},
    )
    rid = app.ingest(suspicious_ip_alert(2, "203.0.113.9"))[0].remediations[0].remediation_id
    drain(app)
    rem = app.get_remediation(rid)
    assert rem["state"] == "failed"
    assert rem["history"][-1]["reason"] == (
        "verification failed: block: target edge does not hold the block"
    )
