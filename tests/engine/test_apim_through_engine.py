"""Azure API Management through the engine: policy containment and subscription suspension."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clampdown.testing.arm import FakeArm
from tests.conftest import suspicious_ip_alert
from tests.engine.conftest import AppFactory, drain

OWNER_POLICY = """<policies>
    <inbound>
        <base />
        <!-- the owner's own rules -->
        <set-header name="X-Env" exists-action="override"><value>prod</value></set-header>
    </inbound>
    <backend><base /></backend>
    <outbound><base /></outbound>
    <on-error><base /></on-error>
</policies>"""

BLOCK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-at-apim}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: apim, ip: "${{ finding.ip }}", scope: payments}
      expires: 2s
"""

SUSPEND = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: suspend-at-apim}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: suspend
      uses: credential.suspend
      with: {target: apim, subscription: "{sid}", reason: "suspicious access"}
      expires: 1s
"""


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    monkeypatch.setenv("APIM_SECRET", "secret")
    with FakeArm().running() as fake:
        fake.add_api("payments")
        fake.set_policy("payments", OWNER_POLICY)
        fake.add_subscription("partner-1")
        fake.add_subscription("already-off", state="suspended", state_comment="by the owner")
        yield fake


def _target(arm: FakeArm) -> dict[str, Any]:
    return {
        "type": "azure-apim",
        "tenant_id": "tenant",
        "client_id": "client",
        "client_secret": {"env": "APIM_SECRET"},
        "subscription_id": "00000000-0000-0000-0000-000000000000",
        "resource_group": "rg",
        "service_name": "apim",
        "management_url": arm.url,
        "login_url": arm.url,
    }


def test_blocks_merge_into_the_owners_policy_and_expiry_restores_it_exactly(
    make_app: AppFactory, arm: FakeArm
) -> None:
    app = make_app(BLOCK, targets={"apim": _target(arm)})
    rids = [
        app.ingest(suspicious_ip_alert(n, ip))[0].remediations[0].remediation_id
        for n, ip in enumerate(["203.0.113.7", "203.0.113.8"])
    ]
    drain(app, until=lambda: all(app.get_remediation(r)["state"] == "succeeded" for r in rids))
    policy = arm.policy("payments")
    assert policy is not None
    assert policy.count("<ip-filter") == 1
    assert "<address>203.0.113.7</address>" in policy
    assert "<address>203.0.113.8</address>" in policy
    assert '<set-header name="X-Env"' in policy

    drain(app, until=lambda: all(app.get_remediation(r)["state"] == "expired" for r in rids))
    assert arm.policy("payments") == OWNER_POLICY


@pytest.mark.parametrize(
    ("sid", "after_expiry", "comment"),
    [
        ("partner-1", "active", "Reactivated by Clampdown"),
        ("already-off", "suspended", "by the owner"),
    ],
)
def test_suspension_is_undone_only_when_clampdown_suspended(
    make_app: AppFactory, arm: FakeArm, sid: str, after_expiry: str, comment: str
) -> None:
    app = make_app(SUSPEND.replace("{sid}", sid), targets={"apim": _target(arm)})
    rid = app.ingest(suspicious_ip_alert(1, "203.0.113.7"))[0].remediations[0].remediation_id
    drain(app, until=lambda: app.get_remediation(rid)["state"] in ("succeeded", "failed"))
    assert app.get_remediation(rid)["state"] == "succeeded"
    suspended = arm.subscription(sid)
    assert suspended["state"] == "suspended"
    if sid == "partner-1":
        assert suspended["stateComment"] == (
            f"Suspended by Clampdown, remediation {rid}: suspicious access"
        )
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "expired")
    after = arm.subscription(sid)
    assert after["state"] == after_expiry
    assert after["stateComment"].startswith(comment)
