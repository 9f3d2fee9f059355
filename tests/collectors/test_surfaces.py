"""Source health over REST and metrics, and the pulling tasks `serve` runs beside the engine."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from clampdown.api.app import create_app
from clampdown.collectors.base import PullError
from clampdown.collectors.runner import pull_once
from clampdown.services import Clampdown
from clampdown.store import sources
from clampdown.testing.defender import FakeDefender
from clampdown.testing.graph import FakeGraph
from tests.api.conftest import auth
from tests.collectors.conftest import (
    OpenApp,
    Sleeps,
    arm_alert,
    defender_alerts_source,
    graph_alert,
    graph_source,
    source_ids,
)
from tests.metrics.conftest import parse, value


async def test_get_sources_needs_the_read_scope_and_gives_the_health(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    defender.add_alert(arm_alert("a-1"))
    app = open_app(defender_alerts_source(defender.url), defender_alerts_source(defender.url, "b"))
    result = await pull_once(app, "mdc-alerts", sleep=sleeps)
    with TestClient(create_app(app, run_worker=False)) as client:
        assert client.get("/v1/sources").status_code == 401
        assert client.get("/v1/sources", headers=auth("ingest")).status_code == 403
        response = client.get("/v1/sources", headers=auth("read"))
    assert response.status_code == 200
    first, second = response.json()["sources"]
    assert first["name"] == "mdc-alerts"
    assert first["type"] == "defender-alerts"
    assert first["status"] == "ok"
    assert datetime.fromisoformat(first["checkpoint"]) == result.checkpoint
    assert first["lag_seconds"] >= 0
    assert (first["pulled"], first["ingested_total"], first["errors_total"]) == (1, 1, 0)
    assert first["last_error"] is None
    assert (second["name"], second["status"], second["lag_seconds"]) == ("b", "pending", None)


async def test_metrics_show_each_configured_source_only(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    for n in range(4):
        defender.add_alert(arm_alert(f"a-{n}"))
    app = open_app(defender_alerts_source(defender.url), defender_alerts_source(defender.url, "b"))
    await pull_once(app, "mdc-alerts", sleep=sleeps)
    defender.fail_next(503, path_contains="/Microsoft.Security/alerts", times=5)
    await _pull_failing(app, "b", sleeps)
    with app.db.write() as conn:  # state left by a source no longer configured
        sources.failed(conn, "removed", error="gone", now=datetime.now(UTC))
    with TestClient(create_app(app, run_worker=False)) as client:
        response = client.get("/metrics", headers=auth("read"))
    assert response.status_code == 200
    got = parse(response.text)
    success = value(got, "clampdown_source_last_success_timestamp_seconds", source="mdc-alerts")
    assert abs(success - time.time()) < 600
    assert value(got, "clampdown_source_last_success_timestamp_seconds", source="b") == 0
    assert value(got, "clampdown_source_lag_seconds", source="mdc-alerts") >= 0
    assert ("clampdown_source_lag_seconds", frozenset({("source", "b")})) not in got
    assert value(got, "clampdown_source_findings_total", source="mdc-alerts") == 4
    assert value(got, "clampdown_source_errors_total", source="mdc-alerts") == 0
    assert value(got, "clampdown_source_errors_total", source="b") == 1
    assert not any(dict(labels).get("source") == "removed" for _, labels in got)


async def _pull_failing(app: Clampdown, name: str, sleeps: Sleeps) -> None:
    with pytest.raises(PullError, match=f"source {name}: "):
        await pull_once(app, name, sleep=sleeps)


def test_serve_pulls_each_enabled_source_and_stops_cleanly(
    defender: FakeDefender, graph: FakeGraph, open_app: OpenApp
) -> None:
    """The app's lifespan starts a pulling task per enabled source next to the engine."""
    defender.add_alert(arm_alert("from-arm"))
    graph.add_alert(graph_alert("from-graph"))
    app = open_app(
        defender_alerts_source(defender.url, interval="1h"),
        graph_source(graph.url, enabled=False),
    )
    with TestClient(create_app(app)) as client:
        deadline = time.monotonic() + 20
        while True:
            health = client.get("/v1/sources", headers=auth("read")).json()["sources"]
            if health[0]["status"] != "pending" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert source_ids(app) == ["from-arm"]
    assert graph.requests_to("GET", "/security/alerts_v2") == []
    assert [h["status"] for h in health] == ["ok", "disabled"]
