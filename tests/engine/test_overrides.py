"""A person undoes a containment early or extends it: through the step that made it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from clampdown.engine.decisions import Request
from clampdown.errors import ConflictError, InputError, NotFoundError
from clampdown.model import Decision
from clampdown.services import Clampdown
from clampdown.store import jobs
from clampdown.testing.kong import FakeKong
from tests.conftest import suspicious_ip_alert
from tests.engine.conftest import AppFactory, drain

PLAYBOOK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-ip}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: TARGET, ip: "${{ finding.ip }}", scope: "SCOPE"}
      expires: 1h
"""
IP = "203.0.113.7"


def _contained(app: Clampdown) -> tuple[str, str]:
    rid = app.ingest(suspicious_ip_alert(1, IP))[0].remediations[0].remediation_id
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "succeeded")
    [row] = app.list_containments()
    return rid, row["id"]


def _builtin(make_app: AppFactory) -> Clampdown:
    return make_app(PLAYBOOK.replace("TARGET", "builtin").replace("SCOPE", "*"))


@pytest.fixture
def kong() -> Iterator[FakeKong]:
    with FakeKong().running() as fake:
        fake.add_service("orders")
        yield fake


def test_undo_lifts_at_once_records_who_and_rolls_back(make_app: AppFactory) -> None:
    app = _builtin(make_app)
    rid, cid = _contained(app)
    assert app.decide(Request(ip=IP)).decision is Decision.DENY

    app.undo_containment(cid, actor="console:alice", reason="our partner's scanner")
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "rolled_back")

    assert app.list_containments() == []
    [lifted] = app.list_containments(include_removed=True)
    assert lifted["removed_at"] is not None
    assert app.decide(Request(ip=IP)).decision is Decision.ALLOW
    rem = app.get_remediation(rid)
    assert rem["steps"][0]["state"] == "undone"
    steps = [h for h in rem["history"] if h["step_key"] == "block"]
    assert [(h["to_state"], h["actor"], h["reason"]) for h in steps[-2:]] == [
        ("succeeded", "console:alice", "undo requested: our partner's scanner"),
        ("undone", "console:alice", "undone early (undo requested: our partner's scanner)"),
    ]
    assert rem["history"][-1]["to_state"] == "rolled_back"
    assert rem["history"][-1]["actor"] == "console:alice"
    # The expiry job found nothing left to undo.
    assert app.pending_work() == 0


def test_undo_on_a_gateway_target_removes_it_there(make_app: AppFactory, kong: FakeKong) -> None:
    app = make_app(
        PLAYBOOK.replace("TARGET", "edge").replace("SCOPE", "service:orders"),
        targets={"edge": {"type": "kong", "admin_url": kong.url}},
    )
    rid, cid = _contained(app)
    assert kong.plugins("ip-restriction", service="orders")[0]["config"]["deny"] == [IP]

    app.undo_containment(cid, actor="console:alice", reason="")
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "rolled_back")
    assert kong.plugins("ip-restriction") == []


def test_extend_moves_the_expiry_everywhere(make_app: AppFactory) -> None:
    app = _builtin(make_app)
    rid, cid = _contained(app)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)

    row = app.extend_containment(cid, until=until, actor="console:bob", note="still probing")

    assert row["expires_at"] == until
    rem = app.get_remediation(rid)
    assert rem["steps"][0]["expires_at"] == until
    last = rem["history"][-1]
    assert last["actor"] == "console:bob"
    assert last["reason"].endswith(f"to {until.isoformat()}: still probing")
    with app.db.write() as conn:
        due = jobs.claim(conn, owner="t", now=until, lease=timedelta(1), limit=9)
    assert [(j.kind, j.due_at) for j in due] == [("undo_step", until)]


def test_extend_is_streamed_to_other_processes(make_app: AppFactory) -> None:
    app = _builtin(make_app)
    _, cid = _contained(app)
    cursor = app.stream(0)["cursor"]
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5)

    app.extend_containment(cid, until=until, actor="console:bob")

    changes = app.stream(cursor)
    [change] = changes["added"]
    assert (change["id"], change["expires_at"]) == (cid, until)


def test_refusals(make_app: AppFactory) -> None:
    app = _builtin(make_app)
    rid, cid = _contained(app)
    with pytest.raises(NotFoundError):
        app.undo_containment("nope", actor="console:a", reason="")
    with pytest.raises(InputError, match="not in the future"):
        app.extend_containment(cid, until=datetime.now(UTC) - timedelta(1), actor="console:a")
    app.undo_containment(cid, actor="console:a", reason="")
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "rolled_back")
    with pytest.raises(ConflictError, match="already lifted"):
        app.undo_containment(cid, actor="console:a", reason="")
    with pytest.raises(ConflictError, match="already lifted"):
        app.extend_containment(cid, until=datetime.now(UTC) + timedelta(1), actor="console:a")
