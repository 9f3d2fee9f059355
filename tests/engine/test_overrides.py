"""A person undoes a containment early or extends it: through the step that made it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from clampdown.engine.decisions import Request
from clampdown.errors import ConflictError, InputError, NotFoundError
from clampdown.model import Decision
from clampdown.services import Clampdown
from clampdown.store import containments, jobs
from clampdown.testing.kong import FakeKong
from tests.conftest import suspicious_ip_alert
from tests.engine.conftest import AppFactory, drain
from tests.fakes import Reply, WebhookReceiver

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


PERMANENT_AND_TEMPORARY = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-ip}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: approval
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", scope: "*"}
    - id: throttle
      uses: gateway.throttle
      with: {target: builtin, ip: "${{ finding.ip }}", rate: 5, period: 60, scope: "orders"}
      expires: 1h
"""
THEN_TELL = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-ip}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", scope: "*"}
      expires: 1h
    - id: tell
      uses: notify.send
      with: {target: hook, text: "blocked"}
"""


def test_undoing_the_temporary_part_leaves_a_permanent_block_and_its_remediation(
    make_app: AppFactory,
) -> None:
    app = make_app(PERMANENT_AND_TEMPORARY)
    rid = app.ingest(suspicious_ip_alert(1, IP))[0].remediations[0].remediation_id
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "awaiting_approval")
    app.approve(rid, actor="console:x")
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "succeeded")
    [temporary] = [r for r in app.list_containments() if r["expires_at"] is not None]

    app.undo_containment(temporary["id"], actor="console:alice", reason="fp")
    drain(app)

    assert app.get_remediation(rid)["state"] == "succeeded"  # the block still holds
    assert app.decide(Request(ip=IP)).decision is Decision.DENY


def test_an_undo_while_later_steps_run_ends_rolled_back_not_failed(make_app: AppFactory) -> None:
    receiver = WebhookReceiver(default=Reply(delay=1.0))
    with receiver.running():
        app = make_app(THEN_TELL, webhook=receiver)
        rid = app.ingest(suspicious_ip_alert(1, IP))[0].remediations[0].remediation_id

        def undo_when_blocked() -> bool:
            rows = app.list_containments()
            if rows and app.get_remediation(rid)["steps"][1]["state"] == "running":
                app.undo_containment(rows[0]["id"], actor="console:alice", reason="fp")
                return True
            return False

        drain(app, until=undo_when_blocked)
        drain(app, timeout=15)
    rem = app.get_remediation(rid)
    assert rem["state"] == "rolled_back"
    assert not any(h["reason"].startswith("verification failed") for h in rem["history"])


def test_a_second_undo_or_an_extension_after_an_undo_is_refused(make_app: AppFactory) -> None:
    app = _builtin(make_app)
    rid, cid = _contained(app)
    app.undo_containment(cid, actor="console:alice", reason="a")
    with pytest.raises(ConflictError, match="already requested"):
        app.undo_containment(cid, actor="console:bob", reason="b")
    with pytest.raises(ConflictError, match="being lifted"):
        app.extend_containment(cid, by=timedelta(days=3), actor="console:carol")
    drain(app)
    undone = [h for h in app.get_remediation(rid)["history"] if h["to_state"] == "undone"]
    assert [h["actor"] for h in undone] == ["console:alice"]


def test_an_extension_while_the_expiry_undo_runs_is_refused(make_app: AppFactory) -> None:
    app = _builtin(make_app)
    _, cid = _contained(app)
    [row] = app.list_containments()
    with app.db.write() as conn:  # a worker has claimed the due expiry undo
        jobs.claim(
            conn,
            owner="w1",
            now=row["expires_at"] + timedelta(seconds=1),
            lease=timedelta(days=400),
            limit=5,
        )
    with pytest.raises(ConflictError, match="being lifted"):
        app.extend_containment(cid, by=timedelta(days=7), actor="console:bob")


def test_an_expiry_job_claimed_after_an_extension_waits_for_the_new_expiry(
    make_app: AppFactory,
) -> None:
    app = _builtin(make_app)
    rid, cid = _contained(app)
    [row] = app.list_containments()
    app.extend_containment(cid, by=timedelta(days=1), actor="console:bob")
    with app.db.write() as conn:  # the job row as it was due before the extension
        jobs.reschedule(conn, "undo_step", rid, "block", due_at=row["expires_at"])
    drain(app)
    assert app.get_remediation(rid)["state"] == "succeeded"
    assert [r["id"] for r in app.list_containments()] == [cid]


def test_a_containment_without_a_remediation_is_lifted_at_once_on_the_builtin_list_only(
    make_app: AppFactory,
) -> None:
    app = _builtin(make_app)
    now = datetime.now(UTC)
    with app.db.write() as conn:
        ids = [
            containments.add(
                conn,
                {
                    "key": f"by-hand-{target}",
                    "target": target,
                    "kind": "block",
                    "subject_type": "ip",
                    "subject": "198.51.100.9",
                    "scope": "*",
                    "reason": "by hand",
                    "created_by": "cli:alice",
                },
                now=now,
            )[0]
            for target in ("builtin", "edge")
        ]
    app.undo_containment(ids[0], actor="console:alice", reason="done")
    assert app.decide(Request(ip="198.51.100.9")).decision is Decision.ALLOW
    with pytest.raises(ConflictError, match="no step to undo it through"):
        app.undo_containment(ids[1], actor="console:alice", reason="done")
