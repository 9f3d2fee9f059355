"""credential.revoke through the engine: the token is revoked and never shown back."""

from __future__ import annotations

import json

import pytest

from clampdown.secrets import fingerprint
from clampdown.testing.oauth import FakeRevocationServer
from tests.conftest import suspicious_ip_alert
from tests.engine.conftest import AppFactory, drain

REVOKE = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: revoke-token}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: revoke
      uses: credential.revoke
      with: {target: idp, token: "leaked-access-token", token_type_hint: access_token}
"""


def test_token_is_revoked_verified_and_only_its_fingerprint_is_shown(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDP_SECRET", "idp-secret")
    with FakeRevocationServer("clampdown", "idp-secret").running() as idp:
        idp.issue("leaked-access-token")
        target = {
            "type": "oauth-revocation",
            "revocation_url": idp.revocation_url,
            "client_id": "clampdown",
            "client_secret": {"env": "IDP_SECRET"},
        }
        app = make_app(REVOKE, targets={"idp": target})
        rid = app.ingest(suspicious_ip_alert(1, "203.0.113.7"))[0].remediations[0].remediation_id
        drain(app)
        assert not idp.is_active("leaked-access-token")
    rem = app.get_remediation(rid)
    assert rem["state"] == "succeeded"
    [step] = rem["steps"]
    assert step["params"]["token"] == fingerprint("leaked-access-token")
    assert step["result"]["output"] == {"credential": fingerprint("leaked-access-token")}
    shown = json.dumps(rem, default=str)
    assert "leaked-access-token" not in shown, shown
