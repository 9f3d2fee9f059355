"""Every sample posted to a running `clampdown serve`: the right finding, containment and undo.

The default pack runs as shipped except that its one-hour expiries are shortened to seconds,
so that undo on schedule is observed within the test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import sample
from tests.e2e.server import Server, client, write_config

pytestmark = pytest.mark.slow

EXPIRY_SECONDS = 4

# file -> [(type, ip, decision once contained)]; decision None = nothing to enforce.
EXPECTED: dict[str, list[tuple[str, str, str | None]]] = {
    "defender-rest-suspicious-ip.json": [("API_AccessFromSuspiciousIP", "203.0.113.77", "deny")],
    "defender-eventhub-batch.json": [
        ("API_SpikeInAPITraffic", "198.51.100.23", "throttle"),
        ("API_SprayInRequests", "198.51.100.90", "throttle"),
    ],
    "defender-workflow-tor.json": [("API_AccessFromTorExitNode", "2001:db8:4f2a::1c", "deny")],
    "securityalert-row-useragent.json": [
        ("API_AccessFromSuspiciousUserAgent", "192.0.2.45", "deny")
    ],
    "graph-alert-param-enum.json": [("API_ParameterEnumeration", "198.51.100.150", "throttle")],
    "sentinel-incident-payload.json": [("API_SpikeInPayload", "203.0.113.200", "throttle")],
    "recommendation-unauthenticated-endpoint.json": [
        ("Recommendation_UnauthenticatedEndpoint", "", None)
    ],
    "recommendation-unused-endpoint.json": [("Recommendation_UnusedEndpoint", "", None)],
    "ocsf-detection-finding.json": [("credential-stuffing", "192.0.2.10", None)],
}


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    """serve with the default pack, expiries shortened."""
    pack = tmp_path / "pack"
    pack.mkdir()
    for item in (resources.files("clampdown.playbooks") / "pack").iterdir():
        if item.name.endswith(".yaml"):
            text = item.read_text().replace("expires: 1h", f"expires: {EXPIRY_SECONDS}s")
            (pack / item.name).write_text(text)
    config = write_config(tmp_path, playbooks=str(pack), default_pack=False)
    running = Server(config, database_url, tmp_path).start()
    yield running
    running.stop()


def decide(api: httpx2.Client, ip: str, scope_api: str, tries: int = 1) -> str:
    """The decision for `tries` requests from `ip` to `scope_api`; the last one counts."""
    answer = ""
    for _ in range(tries):
        response = api.get("/v1/decisions/check", params={"ip": ip, "api": scope_api})
        assert response.status_code == 200
        answer = response.json()["decision"]
    return str(answer)


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_every_sample_is_normalized_contained_and_undone(server: Server) -> None:
    with client(server, "ingest") as ingest, client(server, "admin") as api:
        posted: list[dict[str, Any]] = []
        for name, expected in EXPECTED.items():
            response = ingest.post("/v1/ingest", json=sample(name))
            assert response.status_code == 202, (name, response.text)
            findings = response.json()["findings"]
            assert [(f["type"], f["ips"][0] if f["ips"] else "") for f in findings] == [
                (t, ip) for t, ip, _ in expected
            ], name
            posted.extend(findings)

        contained = [(t, ip, d) for exp in EXPECTED.values() for t, ip, d in exp if d]

        def all_contained() -> bool:
            active = api.get("/v1/containments").json()["containments"]
            return {c["subject"] for c in active} == {ip for _, ip, _ in contained}

        wait_for(all_contained)
        active = {c["subject"]: c for c in api.get("/v1/containments").json()["containments"]}
        for _, ip, decision in contained:
            scope = active[ip]["scope"]
            target_api = "" if scope == "*" else scope
            tries = (active[ip]["rate"] or 0) + 1
            assert decide(api, ip, target_api, tries) == decision, ip
            assert decide(api, "192.0.2.254", target_api) == "allow"

        states = {
            f["type"]: {
                api.get(f"/v1/remediations/{r['id']}").json()["state"] for r in f["remediations"]
            }
            for f in posted
        }
        # Disabling an endpoint waits for approval; the guided task waits for a person.
        assert states.pop("Recommendation_UnusedEndpoint") == {"awaiting_approval"}
        assert states.pop("Recommendation_UnauthenticatedEndpoint") == {"running"}
        assert states.pop("credential-stuffing") == set()
        for type_, seen in states.items():
            assert seen <= {"running", "verifying", "succeeded"}, (type_, seen)
            assert seen, type_

        # The guided recommendation waits for a person with an open task.
        [task] = api.get("/v1/tasks").json()["tasks"]
        assert "authenticat" in task["title"].lower()

        wait_for(lambda: api.get("/v1/containments").json()["containments"] == [])
        for _, ip, _ in contained:
            assert decide(api, ip, "") == "allow"
        contained_ids = {
            rem["id"]
            for f in posted
            if f["ips"] and f["type"] in {t for t, _, _ in contained}
            for rem in f["remediations"]
        }
        for rid in contained_ids:
            # The list is lifted first; the remediation's own record follows in its own commit.
            wait_for(
                lambda rid=rid: api.get(f"/v1/remediations/{rid}").json()["state"] != "succeeded"
            )
            rem = api.get(f"/v1/remediations/{rid}").json()
            assert rem["state"] == "expired", rem["history"]
            undo = [h for h in rem["history"] if h["to_state"] == "undone"]
            assert undo
            assert undo[0]["reason"] == "expired: undone on schedule"
