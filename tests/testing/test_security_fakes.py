"""The Defender (ARM) and Graph fakes' security lists, exercised over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from clampdown.testing.arm import GRAPH_SCOPE
from clampdown.testing.defender import FakeDefender
from clampdown.testing.graph import FakeGraph

SUB = "6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10"
ALERTS = f"/subscriptions/{SUB}/providers/Microsoft.Security/alerts"
ASSESSMENTS = f"/subscriptions/{SUB}/providers/Microsoft.Security/assessments"
APIM = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ApiManagement/service/a"
GRAPH_ALERTS = "/v1.0/security/alerts_v2"
APIM_SOURCE = "microsoftDefenderForApiManagement"
PREFER = {"Prefer": "include-unknown-enum-members"}


def arm_alert(name: str, group: str = "rg") -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Security"
        f"/locations/westeurope/alerts/{name}",
        "name": name,
        "type": "Microsoft.Security/Locations/alerts",
        "properties": {"alertType": "API_SpikeInAPITraffic", "systemAlertId": name},
    }


@pytest.fixture
def defender() -> Iterator[FakeDefender]:
    fake = FakeDefender(subscription_id=SUB, page_size=2)
    for n in range(5):
        fake.add_alert(arm_alert(f"a{n}", group="rg" if n < 4 else "rg2"))
    fake.add_assessment(
        {
            "id": f"{APIM}/providers/Microsoft.Security/assessments/k1",
            "name": "k1",
            "properties": {
                "displayName": "APIs should be authenticated",
                "resourceDetails": {"Source": "Azure", "Id": APIM},
                "metadata": {"severity": "High"},
            },
        }
    )
    with fake.running() as running:
        yield running


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph(page_size=2)
    for n in range(3):
        fake.add_alert(
            {
                "id": f"g{n}",
                "detectionSource": APIM_SOURCE,
                "lastUpdateDateTime": f"2026-11-2{n}T10:00:00Z",
            }
        )
    fake.add_alert({"id": "other", "detectionSource": "antivirus"})
    with fake.running() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(
    http: aiohttp.ClientSession,
    url: str,
    token: str | None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    sent = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    async with http.get(url, params=params, headers=sent) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def test_arm_alert_list_pages_by_next_link_to_the_end(
    defender: FakeDefender, http: aiohttp.ClientSession
) -> None:
    token = defender.issue_token()
    url: str | None = defender.url + ALERTS + "?api-version=2022-01-01"
    names = []
    while url:
        status, _, body = await get(http, url, token)
        assert status == 200
        names += [alert["name"] for alert in body["value"]]
        url = body.get("nextLink")
    assert names == ["a0", "a1", "a2", "a3", "a4"]
    group = f"/subscriptions/{SUB}/resourceGroups/rg2/providers/Microsoft.Security/alerts"
    _, _, body = await get(http, defender.url + group, token, {"api-version": "2022-01-01"})
    assert [a["name"] for a in body["value"]] == ["a4"]
    assert "nextLink" not in body


async def test_arm_lists_refuse_a_missing_token_and_an_unknown_version(
    defender: FakeDefender, http: aiohttp.ClientSession
) -> None:
    status, headers, body = await get(
        http, defender.url + ALERTS, None, {"api-version": "2022-01-01"}
    )
    assert status == 401
    assert body["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" in headers
    token = defender.issue_token()
    status, _, body = await get(http, defender.url + ALERTS, token, {"api-version": "2015-01-01"})
    assert (status, body["error"]["code"]) == (400, "NoRegisteredProviderFound")
    status, _, body = await get(
        http, defender.url + ALERTS, token, {"api-version": "2022-01-01", "$skipToken": "x"}
    )
    assert (status, body["error"]["code"]) == (400, "InvalidSkipToken")


async def test_arm_throttling_has_retry_after_and_the_arm_error_body(
    defender: FakeDefender, http: aiohttp.ClientSession
) -> None:
    defender.fail_next(429, path_contains="/Microsoft.Security/alerts", retry_after=4)
    status, headers, body = await get(
        http, defender.url + ALERTS, defender.issue_token(), {"api-version": "2022-01-01"}
    )
    assert (status, headers["Retry-After"]) == (429, "4")
    assert body == {
        "error": {
            "code": "TooManyRequests",
            "message": "The request was throttled. Retry after 4 seconds.",
        }
    }


async def test_assessment_metadata_comes_only_when_expanded_and_status_can_change(
    defender: FakeDefender, http: aiohttp.ClientSession
) -> None:
    token = defender.issue_token()
    url = defender.url + ASSESSMENTS
    _, _, plain = await get(http, url, token, {"api-version": "2021-06-01"})
    [item] = plain["value"]
    assert "metadata" not in item["properties"]
    assert item["properties"]["status"]["code"] == "Unhealthy"
    defender.set_assessment_status(item["id"], "Healthy")
    _, _, expanded = await get(
        http, url, token, {"api-version": "2021-06-01", "$expand": "metadata"}
    )
    [item] = expanded["value"]
    assert item["properties"]["metadata"] == {"severity": "High"}
    assert item["properties"]["status"]["code"] == "Healthy"


async def test_graph_hides_evolvable_members_without_the_prefer_header(
    graph: FakeGraph, http: aiohttp.ClientSession
) -> None:
    token = graph.issue_token()
    query = {"$filter": f"detectionSource eq '{APIM_SOURCE}'"}
    _, _, without = await get(http, graph.url + GRAPH_ALERTS, token, query)
    assert without["value"] == []
    _, _, unfiltered = await get(http, graph.url + GRAPH_ALERTS, token)
    assert unfiltered["value"][0]["detectionSource"] == "unknownFutureValue"
    _, _, with_prefer = await get(http, graph.url + GRAPH_ALERTS, token, query, PREFER)
    assert [a["id"] for a in with_prefer["value"]] == ["g0", "g1"]
    assert with_prefer["@odata.nextLink"].startswith(graph.url + GRAPH_ALERTS + "?")
    [request] = graph.requests_to("GET", GRAPH_ALERTS)[-1:]
    assert request.headers["Prefer"] == "include-unknown-enum-members"


async def test_graph_filters_on_update_time_and_pages_by_odata_next_link(
    graph: FakeGraph, http: aiohttp.ClientSession
) -> None:
    token = graph.issue_token()
    expression = (
        f"detectionSource eq '{APIM_SOURCE}' and lastUpdateDateTime ge 2026-11-21T00:00:00Z"
    )
    url: str | None = graph.url + GRAPH_ALERTS
    params: dict[str, str] | None = {"$filter": expression}
    ids = []
    while url:
        status, _, body = await get(http, url, token, params, PREFER)
        assert status == 200
        ids += [a["id"] for a in body["value"]]
        url, params = body.get("@odata.nextLink"), None
    assert ids == ["g1", "g2"]
    graph.update_alert("g0", status="resolved")
    _, _, body = await get(http, graph.url + GRAPH_ALERTS, token, {"$filter": expression}, PREFER)
    assert [a["id"] for a in body["value"]] == ["g0", "g1"]


async def test_graph_refuses_a_bad_filter_and_a_missing_token_with_its_error_body(
    graph: FakeGraph, http: aiohttp.ClientSession
) -> None:
    token = graph.issue_token()
    status, _, body = await get(
        http, graph.url + GRAPH_ALERTS, token, {"$filter": "lastUpdateDateTime ge soon"}
    )
    assert (status, body["error"]["code"]) == (400, "BadRequest")
    assert set(body["error"]["innerError"]) == {"date", "request-id", "client-request-id"}
    status, _, body = await get(http, graph.url + GRAPH_ALERTS, None)
    assert (status, body["error"]["code"]) == (401, "InvalidAuthenticationToken")
    wrong = FakeDefender().issue_token(GRAPH_SCOPE)  # a token from another issuer
    status, _, _ = await get(http, graph.url + GRAPH_ALERTS, wrong)
    assert status == 401
