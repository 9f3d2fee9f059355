"""Undo and extend a containment over the REST API: approve scope, clear 4xx on bad input."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from fastapi.testclient import TestClient

from tests.api.conftest import auth
from tests.conftest import sample


def _block(client: TestClient) -> dict[str, object]:
    client.post(
        "/v1/ingest", json=sample("defender-rest-suspicious-ip.json"), headers=auth("ingest")
    )
    for _ in range(200):
        rows = client.get("/v1/containments", headers=auth("read")).json()["containments"]
        if rows:
            return rows[0]  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError("no containment appeared")


def test_extend_by_then_undo(client: TestClient) -> None:
    block = _block(client)
    before = datetime.fromisoformat(str(block["expires_at"]))
    moved = client.post(
        f"/v1/containments/{block['id']}/extend", json={"by": "1d"}, headers=auth("approve")
    )
    assert moved.status_code == 200, moved.text
    assert datetime.fromisoformat(moved.json()["expires_at"]) - before == timedelta(days=1)

    undo = client.post(
        f"/v1/containments/{block['id']}/undo", json={"reason": "fp"}, headers=auth("approve")
    )
    assert undo.status_code == 202
    url = f"/v1/remediations/{block['remediation_id']}"
    for _ in range(250):
        if client.get(url, headers=auth("read")).json()["state"] == "rolled_back":
            break
        time.sleep(0.02)
    assert client.get(url, headers=auth("read")).json()["state"] == "rolled_back"
    assert client.get("/v1/containments", headers=auth("read")).json()["containments"] == []


def test_overrides_need_the_approve_scope_and_good_input(client: TestClient) -> None:
    block = _block(client)
    url = f"/v1/containments/{block['id']}"
    assert client.post(f"{url}/undo", headers=auth("read")).status_code == 403
    cases = [
        ({"by": "soon"}, 400, "by: not a duration: 'soon'"),
        ({"until": "2030-01-01T00:00:00"}, 400, "until: give a time zone"),
        ({}, 400, "give either a new expiry time or a duration"),
        ({"until": "2020-01-01T00:00:00Z"}, 400, "is not in the future"),
    ]
    for body, status, message in cases:
        response = client.post(f"{url}/extend", json=body, headers=auth("approve"))
        assert response.status_code == status, response.text
        assert message in response.json()["error"]["message"]
    missing = client.post("/v1/containments/nope/undo", headers=auth("approve"))
    assert missing.status_code == 404


def test_absurd_durations_are_4xx_not_500(client: TestClient) -> None:
    block = _block(client)
    far = client.post(
        f"/v1/containments/{block['id']}/extend", json={"by": "99999999d"}, headers=auth("approve")
    )
    assert far.status_code == 400, far.text
    back = client.get("/v1/effectiveness?since=999999999d", headers=auth("read"))
    assert back.status_code == 400, back.text
    assert "before the year 1" in back.json()["error"]["message"]
