"""GET /metrics over HTTP: authentication, the exposition format, and what it counts."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import select

from clampdown import services
from clampdown.api.app import create_app
from clampdown.engine.decisions import Request
from clampdown.services import Clampdown
from clampdown.store.tables import DecisionTallyRow, table
from tests.api.conftest import auth
from tests.conftest import sample
from tests.decisions.conftest import contain
from tests.engine.conftest import AppFactory
from tests.fakes import Reply, WebhookReceiver
from tests.metrics.conftest import Samples, parse, value

READ = auth("read")
CHECK = "/v1/decisions/check"
AUTH = "/v1/decisions/auth"


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics", headers=READ)
    assert response.status_code == 200
    return parse(response.text)


def stored_tallies(app: Clampdown) -> dict[str, tuple[int, int, int]]:
    """The stored tallies per API, summed over hours (a test may cross an hour)."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    with app.db.read() as conn:
        for row in conn.execute(select(table(DecisionTallyRow))):
            total = sums[row.api]
            total[0] += row.allowed
            total[1] += row.denied
            total[2] += row.throttled
    return {api: (a, d, t) for api, (a, d, t) in sums.items()}


class Routed:
    """Records the decisions that reached the FastAPI routes (not the fast path)."""

    def __init__(self, app: Clampdown, monkeypatch: pytest.MonkeyPatch) -> None:
        self.requests: list[Request] = []
        decide_async = app.decide_async

        async def spy(request: Request) -> Any:
            self.requests.append(request)
            return await decide_async(request)

        monkeypatch.setattr(app, "decide_async", spy)


@pytest.fixture
def contained(app: Clampdown, monkeypatch: pytest.MonkeyPatch) -> Routed:
    """A blocked IP and a throttled one (one request an hour), with a list kept fresh."""
    monkeypatch.setattr(services, "DECISION_STALENESS", 3600.0)
    contain(app, "203.0.113.7")
    contain(app, "192.0.2.50", kind="throttle", rate=1, period_seconds=3600)
    app.decide(Request())  # the first read of the list: from now on it is fresh
    return Routed(app, monkeypatch)


def ask_a_few(client: TestClient) -> None:
    """2 allowed, 2 denied, 1 throttled; 3 for the API "orders", 2 naming none."""
    for ip in ("203.0.113.7", "203.0.113.8", "192.0.2.50", "192.0.2.50"):
        response = client.get(CHECK, params={"ip": ip, "api": "orders"}, headers=READ)
        assert response.status_code == 200
    response = client.get(AUTH, headers={**READ, "X-Real-IP": "203.0.113.7"})
    assert response.status_code == 403


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "route"])
def test_decisions_are_counted_and_tallied_on_either_path(
    app: Clampdown, contained: Routed, fast: bool
) -> None:
    web = create_app(app, run_worker=False, fast_decisions=fast)
    with TestClient(web) as client:
        ask_a_few(client)
        got = scrape(client)
    assert (len(contained.requests) == 0) is fast  # the path under test answered
    assert value(got, "clampdown_decisions_total", verdict="allow") == 2
    assert value(got, "clampdown_decisions_total", verdict="deny") == 2
    assert value(got, "clampdown_decisions_total", verdict="throttle") == 1
    # Written when the app stopped, also without the engine (run_worker=False).
    assert stored_tallies(app) == {"orders": (2, 1, 1), "*": (0, 1, 0)}


def test_metrics_needs_a_token_with_the_read_scope(app: Clampdown) -> None:
    with TestClient(create_app(app, run_worker=False)) as client:
        missing = client.get("/metrics")
        unknown = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        ingest_only = client.get("/metrics", headers=auth("ingest"))
        admin = client.get("/metrics", headers=auth("admin"))
        read = client.get("/metrics", headers=READ)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert unknown.status_code == 401
    assert ingest_only.status_code == 403
    assert ingest_only.json()["error"]["code"] == "forbidden"
    assert admin.status_code == 200
    assert read.status_code == 200
    assert read.headers["content-type"] == CONTENT_TYPE_LATEST
    got = parse(read.text)
    assert value(got, "clampdown_store_up") == 1
    assert value(got, "clampdown_decisions_total", verdict="deny") == 0
    assert value(got, "clampdown_findings_ingested_total", shape="graph") == 0
    assert value(got, "clampdown_jobs_due") == 0


def test_metrics_is_in_the_openapi_document_with_bearer_auth(app: Clampdown) -> None:
    with TestClient(create_app(app, run_worker=False)) as client:
        schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/metrics"]["get"]
    assert operation["security"] == [{"bearer": []}]
    assert "text/plain" in operation["responses"]["200"]["content"]


def test_two_apps_in_one_process_count_apart(app: Clampdown, contained: Routed) -> None:
    """Each app has its own registry: no clash, and no count leaks from one to the other."""
    with (
        TestClient(create_app(app, run_worker=False)) as one,
        TestClient(create_app(app, run_worker=False)) as two,
    ):
        one.get(CHECK, params={"ip": "203.0.113.7"}, headers=READ)
        assert value(scrape(one), "clampdown_decisions_total", verdict="deny") == 1
        assert value(scrape(two), "clampdown_decisions_total", verdict="deny") == 0


BLOCK_AND_NOTIFY = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-and-notify}
spec:
  match: {types: ["API_*"], when: "size(finding.ips) > 0"}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", reason: "${{ finding.title }}"}
      expires: 1h
    - id: tell
      uses: notify.send
      with: {target: hook, text: "Blocked ${{ finding.ip }}"}
"""


def wait_for_state(client: TestClient, rid: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rem: dict[str, Any] = client.get(f"/v1/remediations/{rid}", headers=READ).json()
        if rem["state"] == state:
            return rem
        time.sleep(0.02)
    raise AssertionError(f"remediation {rid} did not reach {state}")


def test_steps_ingest_and_time_to_contain_through_the_engine(
    make_app: AppFactory, webhook: WebhookReceiver
) -> None:
    """Block succeeds; the notification fails twice, is retried, then given up."""
    webhook.default = Reply(503)
    app = make_app(BLOCK_AND_NOTIFY, webhook=webhook, max_attempts=3)
    with TestClient(create_app(app)) as client:
        accepted = client.post(
            "/v1/ingest", json=sample("defender-rest-suspicious-ip.json"), headers=auth("ingest")
        ).json()
        [finding] = accepted["findings"]
        [planned] = finding["remediations"]
        rem = wait_for_state(client, planned["id"], "failed")
        received = client.get(f"/v1/findings/{finding['finding_id']}", headers=READ).json()
        got = scrape(client)
    assert value(got, "clampdown_findings_ingested_total", shape="defender-rest") == 1
    assert value(got, "clampdown_steps_total", action="gateway.block", outcome="succeeded") == 1
    assert value(got, "clampdown_steps_total", action="notify.send", outcome="retried") == 2
    assert value(got, "clampdown_steps_total", action="notify.send", outcome="failed") == 1
    assert value(got, "clampdown_step_duration_seconds_count", action="notify.send") == 3
    assert value(got, "clampdown_step_duration_seconds_count", action="gateway.block") == 1
    playbook = {"playbook": "block-and-notify"}
    assert value(got, "clampdown_time_to_contain_seconds_count", **playbook) == 1
    # Measured between the block's start and its recorded end, from the finding's receipt.
    block = rem["steps"][0]
    at = {key: _time(block[key]) for key in ("started_at", "finished_at")}
    since = _time(received["received_at"])
    contained_in = value(got, "clampdown_time_to_contain_seconds_sum", **playbook)
    assert (at["started_at"] - since) <= contained_in <= (at["finished_at"] - since)
    assert value(got, "clampdown_remediations_by_playbook", state="failed", **playbook) == 1
    assert value(got, "clampdown_containments_active", target="builtin", kind="block") == 1


def _time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
