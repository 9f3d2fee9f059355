"""Every sample posted to a running `clampdown serve`: the right finding, containment and undo.

The default pack runs as shipped except that its one-hour expiries are shortened to seconds,
so that undo on schedule is observed within the test.

Then each push route of docs/push.md, with the request exactly as that route sends it: the
Logic App of workflow automation, the Sentinel playbook, the Event Hub forwarding function
(the code of docs/push.md itself), and other detectors posting the generic and OCSF shapes.
Each is answered 202 with its findings stored and their remediations planned.
"""

from __future__ import annotations

import json
import re
import sys
import time
import types
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import FIXTURES, REPO, TOKENS, sample
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


# -- push routes (docs/push.md) ---------------------------------------------------------------

OTHER_DETECTORS = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: throttle-other-detectors}
spec:
  match:
    sources: ["ocsf:*", acme-waf]
    when: size(finding.ips) > 0
  mode: automatic
  steps:
    - id: throttle
      uses: gateway.throttle
      with: {target: builtin, ip: "${{ finding.ip }}", rate: 30, period: 1m, reason: pushed}
      expires: 1h
"""
GENERIC = {
    "schema": "clampdown.finding/v1",
    "source": "acme-waf",
    "id": "evt-20261126-0042",
    "type": "credential-stuffing",
    "title": "Credential stuffing against POST /login",
    "severity": "high",
    "ips": ["192.0.2.10"],
    "endpoint": "POST /login",
}
# What a Logic App's HTTP action sends besides the configured headers (values vary per run).
LOGIC_APP_HEADERS = {
    "User-Agent": "azure-logic-apps/1.0 (workflow 6f1c2b9e0a4d4c1e; version 08584650000000000000)",
    "x-ms-workflow-id": "6f1c2b9e0a4d4c1e9d432b8f7e1a5c10",
    "x-ms-workflow-name": "send-alerts-to-clampdown",
    "x-ms-workflow-run-id": "08584650000000000000000000000CU00",
    "x-ms-client-tracking-id": "08584650000000000000000000000CU00",
}
PLANNED = {"planned", "running", "awaiting_approval", "verifying", "succeeded"}


@pytest.fixture
def route_server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    """serve with the default pack and a playbook for detectors other than Defender."""
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "other-detectors.yaml").write_text(OTHER_DETECTORS)
    config = write_config(tmp_path, playbooks=str(playbooks))
    running = Server(config, database_url, tmp_path).start()
    yield running
    running.stop()


def logic_app_post(server: Server, body: Any) -> httpx2.Response:
    """The HTTP action of docs/push.md: the trigger body, serialized, with a bearer token."""
    headers = {
        **LOGIC_APP_HEADERS,
        "Authorization": f"Bearer {TOKENS['ingest']}",
        "Content-Type": "application/json; charset=utf-8",
    }
    data = json.dumps(body, separators=(",", ":")).encode()
    return httpx2.post(f"{server.base}/v1/ingest", content=data, headers=headers, timeout=10)


def stored_and_planned(server: Server, answer: httpx2.Response) -> list[dict[str, Any]]:
    """Each finding of a 202 answer, as stored, with the playbooks of its remediations."""
    assert answer.status_code == 202, answer.text
    out = []
    with client(server, "read") as api:
        for item in answer.json()["findings"]:
            assert item["new"] is True
            stored = api.get(f"/v1/findings/{item['finding_id']}")
            assert stored.status_code == 200
            playbooks = []
            for planned in item["remediations"]:
                rem = api.get(f"/v1/remediations/{planned['id']}").json()
                assert rem["state"] in PLANNED, rem["history"]
                assert item["finding_id"] in rem["findings"]
                playbooks.append(rem["playbook"])
            out.append({**stored.json(), "playbooks": playbooks})
    return out


def test_workflow_automation_logic_app_route(route_server: Server) -> None:
    """Route 1: the Defender for Cloud alert trigger's body, posted by the Logic App."""
    body = sample("defender-workflow-tor.json")
    [finding] = stored_and_planned(route_server, logic_app_post(route_server, body))
    assert (finding["shape"], finding["source"]) == ("defender-workflow", "defender")
    assert finding["source_id"] == "2517170843033333333_c3"
    assert finding["raw"] == body
    assert finding["playbooks"] == ["block-tor-and-exploit-user-agent"]
    # A retry after a lost answer (Logic Apps retries 5xx and timeouts) stores nothing twice.
    again = logic_app_post(route_server, body)
    assert again.status_code == 202
    assert again.json()["findings"][0]["new"] is False
    assert again.json()["findings"][0]["remediations"] == []


def test_sentinel_automation_rule_playbook_route(route_server: Server) -> None:
    """Route 2: the Microsoft Sentinel incident trigger's body, posted by the playbook."""
    body = sample("sentinel-incident-payload.json")
    [finding] = stored_and_planned(route_server, logic_app_post(route_server, body))
    assert (finding["shape"], finding["source"]) == ("sentinel-incident", "defender")
    assert finding["source_id"] == "2517170843066666666_f6"
    assert finding["ips"] == ["203.0.113.200"]
    assert finding["playbooks"] == ["throttle-ip-on-api"]
    update = {**body, "objectEventType": "Update"}
    again = logic_app_post(route_server, update)
    assert again.status_code == 202
    assert [f["new"] for f in again.json()["findings"]] == [False]


def forwarding_function() -> Callable[[Any], None]:
    """The Event Hub function of docs/push.md, run as written, with the Functions SDK stubbed."""
    text = (REPO / "docs" / "push.md").read_text()
    source = re.search(r"`function_app\.py`:\n\n```python\n(.*?)```", text, re.DOTALL)
    assert source is not None
    stub = types.ModuleType("azure.functions")

    class FunctionApp:
        def event_hub_message_trigger(self, **_: Any) -> Callable[[Any], Any]:
            return lambda function: function

        def retry(self, **_: Any) -> Callable[[Any], Any]:
            return lambda function: function

    stub.FunctionApp = FunctionApp  # type: ignore[attr-defined]
    stub.EventHubEvent = object  # type: ignore[attr-defined]
    azure = types.ModuleType("azure")
    azure.functions = stub  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in ("azure", "azure.functions")}
    sys.modules.update({"azure": azure, "azure.functions": stub})
    try:
        namespace: dict[str, Any] = {"__name__": "function_app"}
        exec(compile(source.group(1), "docs/push.md", "exec"), namespace)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return namespace["forward"]  # type: ignore[no-any-return]


class Event:
    """An Event Hub event as the trigger hands it to the function."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def get_body(self) -> bytes:
        return self.body


def test_continuous_export_event_hub_function_route(
    route_server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Route 3: each event's body, forwarded unchanged by the function of docs/push.md."""
    forward = forwarding_function()
    monkeypatch.setenv("CLAMPDOWN_URL", route_server.base + "/")
    monkeypatch.setenv("CLAMPDOWN_INGEST_TOKEN", TOKENS["ingest"])
    batch = (FIXTURES / "defender-eventhub-batch.json").read_bytes()
    single = (FIXTURES / "defender-rest-suspicious-ip.json").read_bytes()
    recommendation = (FIXTURES / "recommendation-unused-endpoint.json").read_bytes()
    for body in (batch, single, recommendation):
        forward(Event(body))
    with client(route_server, "read") as api:
        stored = api.get("/v1/findings", params={"limit": 10}).json()["findings"]
        remediations = api.get("/v1/remediations").json()["remediations"]
    assert sorted((f["shape"], f["type"]) for f in stored) == [
        ("defender-assessment", "Recommendation_UnusedEndpoint"),
        ("defender-rest", "API_AccessFromSuspiciousIP"),
        ("defender-rest", "API_SpikeInAPITraffic"),
        ("defender-rest", "API_SprayInRequests"),
    ]
    assert sorted(r["playbook"] for r in remediations) == [
        "block-suspicious-ip",
        "retire-unused-endpoint",
        "throttle-ip-across-apis",
        "throttle-ip-on-api",
    ]
    assert {r["state"] for r in remediations} <= PLANNED
    # An event Clampdown can never read is logged and skipped, not retried for ever.
    forward(Event(b'{"records": [{"not": "an alert"}]}'))
    assert "clampdown refused an event: 422" in caplog.text
    # A wrong token is worth retrying once fixed: the function fails, so the event is kept.
    monkeypatch.setenv("CLAMPDOWN_INGEST_TOKEN", "wrong")
    with pytest.raises(OSError, match="401"):
        forward(Event(single))


def test_generic_detector_route(route_server: Server) -> None:
    """Another detector posting Clampdown's generic shape."""
    with client(route_server, "ingest") as ingest:
        answer = ingest.post("/v1/ingest/generic", json=GENERIC)
    [finding] = stored_and_planned(route_server, answer)
    assert (finding["shape"], finding["source"], finding["ips"]) == (
        "generic",
        "acme-waf",
        ["192.0.2.10"],
    )
    assert finding["playbooks"] == ["throttle-other-detectors"]


def test_ocsf_detector_route(route_server: Server) -> None:
    """Another detector posting an OCSF Detection Finding."""
    with client(route_server, "ingest") as ingest:
        answer = ingest.post("/v1/ingest", json=sample("ocsf-detection-finding.json"))
    [finding] = stored_and_planned(route_server, answer)
    assert (finding["shape"], finding["source"]) == ("ocsf", "ocsf:example-api-firewall")
    assert finding["playbooks"] == ["throttle-other-detectors"]
