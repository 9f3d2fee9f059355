"""The decision API over HTTP: check, nginx auth_request, and the change stream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from clampdown.engine import planner
from clampdown.services import Clampdown
from clampdown.store.tables import ContainmentRow, JobRow, StepRow, table
from tests.api.conftest import auth
from tests.conftest import sample
from tests.decisions.conftest import contain, lift
from tests.engine.conftest import drain

READ = auth("read")


def nginx(ip: str, method: str = "GET", uri: str = "/") -> dict[str, str]:
    """The headers an nginx auth_request location passes."""
    return {**READ, "X-Real-IP": ip, "X-Original-Method": method, "X-Original-URI": uri}


def test_check_denies_a_blocked_ip_and_allows_others(app: Clampdown, api: TestClient) -> None:
    cid = contain(app, "203.0.113.7", reason="seen scanning")
    denied = api.get("/v1/decisions/check", params={"ip": "203.0.113.7"}, headers=READ)
    assert denied.status_code == 200
    assert denied.json() == {
        "decision": "deny",
        "containment_id": cid,
        "reason": "seen scanning",
        "retry_after": None,
    }
    allowed = api.get("/v1/decisions/check", params={"ip": "203.0.113.8"}, headers=READ)
    assert allowed.json() == {
        "decision": "allow",
        "containment_id": None,
        "reason": "",
        "retry_after": None,
    }


def test_check_with_no_parameters_allows(app: Clampdown, api: TestClient) -> None:
    contain(app, "203.0.113.7")
    assert api.get("/v1/decisions/check", headers=READ).json()["decision"] == "allow"


def test_check_sees_a_lifted_block_as_allowed(app: Clampdown, api: TestClient) -> None:
    cid = contain(app, "203.0.113.7")
    lift(app, cid)
    response = api.get("/v1/decisions/check", params={"ip": "203.0.113.7"}, headers=READ)
    assert response.json()["decision"] == "allow"


def test_auth_answers_204_for_an_allowed_request(app: Clampdown, api: TestClient) -> None:
    contain(app, "203.0.113.7")
    response = api.get("/v1/decisions/auth", headers=nginx("198.51.100.1"))
    assert response.status_code == 204
    assert "X-Clampdown-Decision" not in response.headers
    assert response.content == b""


def test_auth_answers_403_with_the_decision_for_a_blocked_ip(
    app: Clampdown, api: TestClient
) -> None:
    cid = contain(app, "203.0.113.7")
    response = api.get("/v1/decisions/auth", headers=nginx("203.0.113.7", "POST", "/orders"))
    assert response.status_code == 403
    assert response.headers["X-Clampdown-Decision"] == "deny"
    assert response.headers["X-Clampdown-Containment"] == cid


def test_auth_refuses_a_disabled_endpoint_by_method_and_uri(
    app: Clampdown, api: TestClient
) -> None:
    endpoint = "GET /legacy/invoices"
    contain(app, endpoint, kind="disable", subject_type="endpoint", scope=endpoint, expires_at=None)
    hit = api.get("/v1/decisions/auth", headers=nginx("192.0.2.5", "GET", "/legacy/invoices?p=2"))
    assert hit.status_code == 403
    assert hit.headers["X-Clampdown-Decision"] == "deny"
    other_method = api.get(
        "/v1/decisions/auth", headers=nginx("192.0.2.5", "POST", "/legacy/invoices")
    )
    assert other_method.status_code == 204
    other_path = api.get("/v1/decisions/auth", headers=nginx("192.0.2.5", "GET", "/orders"))
    assert other_path.status_code == 204


def test_auth_throttles_with_retry_after(app: Clampdown, api: TestClient) -> None:
    """Past the rate, nginx gets 403 + X-Clampdown-Decision: throttle + Retry-After."""
    contain(app, "203.0.113.9", kind="throttle", rate=2, period_seconds=3600)
    answers = [api.get("/v1/decisions/auth", headers=nginx("203.0.113.9")) for _ in range(3)]
    assert [a.status_code for a in answers] == [204, 204, 403]
    assert answers[2].headers["X-Clampdown-Decision"] == "throttle"
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 3601
    # Another client is not slowed down by this one's requests.
    assert api.get("/v1/decisions/auth", headers=nginx("203.0.113.10")).status_code == 204


def test_auth_needs_a_token(app: Clampdown, api: TestClient) -> None:
    response = api.get("/v1/decisions/auth", headers={"X-Real-IP": "203.0.113.7"})
    assert response.status_code == 401


def stream(api: TestClient, cursor: int, **params: int) -> dict[str, object]:
    response = api.get("/v1/decisions/stream", params={"cursor": cursor, **params}, headers=READ)
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


def test_stream_snapshot_then_changes_in_order(app: Clampdown, api: TestClient) -> None:
    first = contain(app, "203.0.113.1")
    snapshot = stream(api, 0)
    assert snapshot["snapshot"] is True
    assert [c["id"] for c in snapshot["added"]] == [first]  # type: ignore[union-attr]
    assert snapshot["removed"] == []
    cursor = snapshot["cursor"]
    assert isinstance(cursor, int)
    assert cursor > 0

    # Nothing new: same cursor, no changes.
    idle = stream(api, cursor)
    assert idle == {"cursor": cursor, "snapshot": False, "added": [], "removed": []}

    second = contain(app, "203.0.113.2")
    third = contain(app, "203.0.113.3")
    lift(app, first)
    changes = stream(api, cursor)
    assert changes["snapshot"] is False
    added = changes["added"]
    assert isinstance(added, list)
    assert [c["id"] for c in added] == [second, third]
    assert [c["op"] for c in added] == ["add", "add"]
    assert added[0]["seq"] < added[1]["seq"]
    assert added[0]["subject"] == "203.0.113.2"
    assert changes["removed"] == [first]
    assert isinstance(changes["cursor"], int)
    assert changes["cursor"] > added[1]["seq"]

    assert stream(api, changes["cursor"])["added"] == []


def test_stream_pages_with_limit(app: Clampdown, api: TestClient) -> None:
    """Following with a small limit returns every change once, oldest first."""
    contain(app, "203.0.113.100")
    cursor = stream(api, 0)["cursor"]
    ids = [contain(app, f"203.0.113.{n}") for n in range(1, 6)]
    seen: list[str] = []
    for _ in range(10):
        page = stream(api, cursor, limit=2)  # type: ignore[arg-type]
        added = page["added"]
        assert isinstance(added, list)
        assert len(added) <= 2
        if not added:
            break
        seen.extend(c["id"] for c in added)
        cursor = page["cursor"]
    assert seen == ids


def test_stream_snapshot_leaves_out_lifted_and_expired(app: Clampdown, api: TestClient) -> None:
    kept = contain(app, "203.0.113.1")
    lifted = contain(app, "203.0.113.2")
    lift(app, lifted)
    contain(app, "203.0.113.3", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    snapshot = stream(api, 0)
    assert [c["id"] for c in snapshot["added"]] == [kept]  # type: ignore[union-attr]


def test_stream_rejects_a_negative_cursor(app: Clampdown, api: TestClient) -> None:
    response = api.get("/v1/decisions/stream", params={"cursor": -1}, headers=READ)
    assert response.status_code == 422


def test_an_expired_and_undone_block_is_streamed_as_removed(
    app: Clampdown, api: TestClient
) -> None:
    """The default pack blocks the suspicious IP for 1 h; when the hour is up, it is undone."""
    [result] = app.ingest(sample("defender-rest-suspicious-ip.json"))
    rid = result.remediations[0].remediation_id
    drain(app)
    snapshot = stream(api, 0)
    [block] = snapshot["added"]  # type: ignore[misc]
    assert block["subject"] == "203.0.113.77"
    assert block["remediation_id"] == rid
    assert api.get("/v1/decisions/auth", headers=nginx("203.0.113.77")).status_code == 403

    # The hour passes: the block's expiry and its undo job are now due.
    past = datetime.now(UTC) - timedelta(seconds=1)
    with app.db.write() as conn:
        conn.execute(update(table(ContainmentRow)).values(expires_at=past))
        conn.execute(update(table(StepRow)).values(expires_at=past))
        jobs = table(JobRow)
        moved = conn.execute(
            update(jobs).where(jobs.c.kind == planner.UNDO_STEP).values(due_at=past)
        ).rowcount
    assert moved == 1
    drain(app, until=lambda: app.get_remediation(rid)["state"] == "expired")

    changes = stream(api, snapshot["cursor"])  # type: ignore[arg-type]
    assert changes["added"] == []
    assert changes["removed"] == [block["id"]]
    assert stream(api, 0)["added"] == []
    assert api.get("/v1/decisions/auth", headers=nginx("203.0.113.77")).status_code == 204
