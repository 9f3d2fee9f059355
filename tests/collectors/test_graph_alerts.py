"""The graph-alerts collector against FakeGraph: filter, Prefer header, paging, changes."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from clampdown.collectors.base import PullError
from clampdown.collectors.health import read_health
from clampdown.collectors.runner import pull_once
from clampdown.store import sources
from clampdown.testing.graph import FakeGraph
from tests.collectors.conftest import OpenApp, Sleeps, ago, graph_alert, graph_source, source_ids

NAMES = [f"g-{n}" for n in range(7)]


def list_requests(graph: FakeGraph) -> list[object]:
    return list(graph.requests_to("GET", "/v1.0/security/alerts_v2"))


async def test_the_request_filters_on_the_detection_source_and_update_time_with_prefer(
    graph: FakeGraph, open_app: OpenApp, sleeps: Sleeps
) -> None:
    app = open_app(graph_source(graph.url))
    result = await pull_once(app, "graph-alerts", sleep=sleeps)
    [request] = graph.requests_to("GET", "/v1.0/security/alerts_v2")
    since = result.since.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert request.query == {
        "$filter": "detectionSource eq 'microsoftDefenderForApiManagement' "
        f"and lastUpdateDateTime ge {since}"
    }
    assert request.headers["Prefer"] == "include-unknown-enum-members"
    assert request.headers["Authorization"].startswith("Bearer ")
    [token] = graph.requests_to("POST", "/oauth2/v2.0/token")
    assert token.body["scope"] == "https://graph.microsoft.com/.default"


async def test_a_pull_follows_odata_next_links_and_keeps_the_api_management_source(
    graph: FakeGraph, open_app: OpenApp, sleeps: Sleeps
) -> None:
    for name in NAMES:
        graph.add_alert(graph_alert(name, at=ago(minutes=3)))
    graph.add_alert(graph_alert("endpoint", detection_source="microsoftDefenderForEndpoint"))
    app = open_app(graph_source(graph.url))
    result = await pull_once(app, "graph-alerts", sleep=sleeps)
    assert (result.pages, result.received, result.new) == (3, 7, 7)
    assert [r.query.get("$skiptoken") for r in graph.requests_to("GET", "/alerts_v2")] == [
        None,
        "3",
        "6",
    ]
    # The provider alert id is the finding's id: the same alert over ARM is the same finding.
    assert source_ids(app) == sorted(NAMES)


async def test_an_alert_changed_at_the_source_is_pulled_again_and_old_ones_are_not(
    graph: FakeGraph, open_app: OpenApp, sleeps: Sleeps
) -> None:
    for name in NAMES:
        graph.add_alert(graph_alert(name, at=ago(hours=1)))
    app = open_app(graph_source(graph.url, overlap="10m"))
    first = await pull_once(app, "graph-alerts", sleep=sleeps)
    assert first.new == 7
    graph.update_alert("dag-3", status="resolved")
    second = await pull_once(app, "graph-alerts", sleep=sleeps)
    assert second.since == first.checkpoint - timedelta(minutes=10)
    assert (second.received, second.new, second.repeats) == (1, 0, 1)
    assert source_ids(app) == sorted(NAMES)


async def test_throttling_and_server_errors_are_retried(
    graph: FakeGraph, open_app: OpenApp, sleeps: Sleeps
) -> None:
    for name in NAMES:
        graph.add_alert(graph_alert(name))
    graph.fail_next(429, path_contains="/security/alerts_v2", retry_after=11)
    graph.fail_next(502, path_contains="/security/alerts_v2")
    app = open_app(graph_source(graph.url))
    result = await pull_once(app, "graph-alerts", sleep=sleeps)
    assert result.new == 7
    assert sleeps.waits[0] >= 11
    assert len(sleeps.waits) == 2


async def test_a_missing_permission_says_which(
    open_app: OpenApp, sleeps: Sleeps, graph: FakeGraph
) -> None:
    graph.roles = frozenset({"User.Read.All"})
    app = open_app(graph_source(graph.url))
    with pytest.raises(
        PullError, match=r"403 Authorization_RequestDenied.*SecurityAlert\.Read\.All"
    ):
        await pull_once(app, "graph-alerts", sleep=sleeps)


async def test_an_odata_next_link_to_another_host_is_refused(
    graph: FakeGraph, open_app: OpenApp, sleeps: Sleeps
) -> None:
    for name in NAMES:
        graph.add_alert(graph_alert(name))
    graph.next_link_base = "http://127.0.0.3:9"
    app = open_app(graph_source(graph.url))
    with pytest.raises(PullError, match=re.escape("refusing a @odata.nextLink to 127.0.0.3")):
        await pull_once(app, "graph-alerts", sleep=sleeps)
    assert len(list_requests(graph)) == 1


async def test_a_checkpoint_ahead_of_the_clock_does_not_hide_changes(
    graph: FakeGraph, open_app: OpenApp, sleeps: Sleeps
) -> None:
    """The clock ran an hour fast for one pull, then was corrected."""
    graph.add_alert(graph_alert("late", at=ago(minutes=2)))
    app = open_app(graph_source(graph.url, overlap="10m"))
    ahead = ago(hours=-1)
    with app.db.write() as conn:
        sources.succeeded(conn, "graph-alerts", checkpoint=ahead, pulled=0, ingested=0, now=ahead)

    result = await pull_once(app, "graph-alerts", sleep=sleeps)

    assert result.new == 1
    assert result.since <= ago(minutes=10)
    assert result.checkpoint < ahead  # corrected to this pull's start
    [health] = read_health(app)
    assert health["checkpoint"] == result.checkpoint
