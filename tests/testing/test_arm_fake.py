"""The ARM / API Management fake, exercised over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from clampdown.testing.arm import GRAPH_SCOPE, MANAGEMENT_SCOPE, FakeArm, Lro

VERSION = "2022-08-01"
XML = "<policies><inbound><base /></inbound><outbound><base /></outbound></policies>"
BLOCK = (
    '<policies><inbound><base /><ip-filter action="forbid"><address>203.0.113.7</address>'
    "</ip-filter></inbound></policies>"
)
EXPR = (
    '<policies><inbound><rate-limit-by-key calls="5" renewal-period="60" '
    'counter-key="@(context.Request.IpAddress)" /><set-header name="x" exists-action="override">'
    '<value>@(context.Request.Headers.GetValueOrDefault("a","") + "<b>")</value></set-header>'
    "</inbound></policies>"
)


@pytest.fixture
def arm() -> Iterator[FakeArm]:
    fake = FakeArm(tenant="t", client_id="c", client_secret="s", page_size=2)
    fake.add_api("orders", "Orders", "orders")
    fake.add_api("users", "Users", "users")
    fake.add_api("pets", "Pets", "pets", subscriptionRequired=False)
    fake.add_operation("orders", "get-order", "GET", "/orders/{id}")
    fake.add_subscription("sub1", display_name="Partner", primary_key="p1", secondary_key="s1")
    fake.add_subscription("sub2", state="suspended", scope="/apis/orders")
    with fake.running() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Arm:
    """A tiny ARM client for the tests: returns (status, headers, body)."""

    def __init__(self, http: aiohttp.ClientSession, fake: FakeArm, token: str) -> None:
        self.http, self.fake, self.token = http, fake, token

    async def __call__(
        self,
        method: str,
        rest: str,
        *,
        json: Any = None,
        if_match: str | None = None,
        params: dict[str, str] | None = None,
        url: str | None = None,
    ) -> tuple[int, Mapping[str, str], Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if if_match is not None:
            headers["If-Match"] = if_match
        query = None if url else {"api-version": VERSION, **(params or {})}
        async with self.http.request(
            method, url or self.fake.service_url + rest, json=json, headers=headers, params=query
        ) as resp:
            body = await resp.json() if resp.content_length else None
            return resp.status, CIMultiDict(resp.headers), body


async def get_token(
    http: aiohttp.ClientSession, fake: FakeArm, **overrides: str
) -> tuple[int, Any]:
    form = {
        "client_id": "c",
        "client_secret": "s",
        "grant_type": "client_credentials",
        "scope": MANAGEMENT_SCOPE,
        **overrides,
    }
    async with http.post(fake.token_url, data=form) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def call(http: aiohttp.ClientSession, arm: FakeArm) -> Arm:
    status, body = await get_token(http, arm)
    assert status == 200
    return Arm(http, arm, body["access_token"])


def policy_body(xml: str, fmt: str = "rawxml") -> dict[str, Any]:
    return {"properties": {"format": fmt, "value": xml}}


async def test_token_issue_and_errors(http: aiohttp.ClientSession, arm: FakeArm) -> None:
    """Tokens are issued for good credentials; errors use the identity platform's shape."""
    status, body = await get_token(http, arm)
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    assert body["access_token"]

    status, body = await get_token(http, arm, client_secret="wrong")
    assert status == 401
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [7000215]
    assert body["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")

    status, body = await get_token(http, arm, scope="https://management.azure.com/read")
    assert (status, body["error"]) == (400, "invalid_scope")
    status, body = await get_token(http, arm, grant_type="password")
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    status, body = await get_token(http, arm, client_id="other")
    assert (status, body["error"]) == (400, "unauthorized_client")
    status, body = await get_token(http, arm, scope=GRAPH_SCOPE)
    assert status == 200
    assert arm.token_requests == 6


async def test_arm_requires_a_valid_management_token(
    http: aiohttp.ClientSession, arm: FakeArm
) -> None:
    """ARM answers 401 without a current token issued for the management audience."""
    url = arm.service_url + "/apis"
    async with http.get(url, params={"api-version": VERSION}) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "AuthenticationFailed"
        assert "WWW-Authenticate" in resp.headers

    graph = arm.issue_token(GRAPH_SCOPE)
    status, _, body = await Arm(http, arm, "made-up")("GET", "/apis")
    assert (status, body["error"]["code"]) == (401, "InvalidAuthenticationToken")
    status, _, body = await Arm(http, arm, graph)("GET", "/apis")
    assert (status, body["error"]["code"]) == (401, "InvalidAuthenticationTokenAudience")

    token = arm.issue_token()
    status, _, _ = await Arm(http, arm, token)("GET", "/apis")
    assert status == 200
    arm.expire_tokens()
    status, _, body = await Arm(http, arm, token)("GET", "/apis")
    assert (status, body["error"]["code"]) == (401, "ExpiredAuthenticationToken")


async def test_api_version_and_unknown_service(call: Arm, arm: FakeArm) -> None:
    """A missing api-version is a 400; another service is a 404."""
    async with call.http.get(
        arm.service_url + "/apis", headers={"Authorization": f"Bearer {call.token}"}
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "MissingApiVersionParameter"
    other = arm.service_url.replace("/service/apim", "/service/nope")
    status, _, body = await call("GET", "", url=other + f"/apis?api-version={VERSION}")
    assert (status, body["error"]["code"]) == (404, "ResourceNotFound")


async def test_paging_apis_and_operations(call: Arm) -> None:
    """Lists are paged with count and a nextLink that works."""
    status, _, page = await call("GET", "/apis")
    assert status == 200
    assert [a["name"] for a in page["value"]] == ["orders", "users"]
    assert page["count"] == 3
    assert page["value"][0]["properties"]["path"] == "orders"
    status, _, page = await call("GET", "", url=page["nextLink"])
    assert [a["name"] for a in page["value"]] == ["pets"]
    assert page["nextLink"] is None

    status, _, ops = await call("GET", "/apis/orders/operations")
    assert ops["value"][0]["properties"]["urlTemplate"] == "/orders/{id}"
    status, _, body = await call("GET", "/apis/missing/operations")
    assert (status, body["error"]["code"]) == (404, "ResourceNotFound")


async def test_patch_api_needs_if_match(call: Arm, arm: FakeArm) -> None:
    """PATCH of an API needs If-Match and honours it."""
    patch = {"properties": {"subscriptionRequired": True}}
    status, _, body = await call("PATCH", "/apis/pets", json=patch)
    assert (status, body["error"]["code"]) == (400, "ValidationError")
    status, headers, _ = await call("GET", "/apis/pets")
    etag = headers["ETag"]
    arm.update_api("pets", description="changed elsewhere")
    status, _, body = await call("PATCH", "/apis/pets", json=patch, if_match=etag)
    assert (status, body["error"]["code"]) == (412, "PreconditionFailed")
    status, _, body = await call("PATCH", "/apis/pets", json=patch, if_match="*")
    assert status == 200
    assert body["properties"]["subscriptionRequired"] is True
    api = arm.api("pets")
    assert api is not None
    assert api["subscriptionRequired"] is True
    assert api["description"] == "changed elsewhere"


async def test_policy_lifecycle(call: Arm, arm: FakeArm) -> None:
    """A policy is created, read, guarded by its ETag, updated and deleted."""
    path = "/apis/orders/policies/policy"
    status, _, body = await call("GET", path, params={"format": "rawxml"})
    assert (status, body["error"]["code"]) == (404, "ResourceNotFound")

    status, headers, body = await call("PUT", path, json=policy_body(XML))
    assert status == 201
    created = headers["ETag"]
    assert created.startswith('"')
    assert created.endswith('"')
    assert arm.policy("orders") == XML

    status, headers, body = await call("GET", path, params={"format": "rawxml"})
    assert status == 200
    assert headers["ETag"] == created
    assert body["type"] == "Microsoft.ApiManagement/service/apis/policies"
    assert body["name"] == "policy"
    assert body["id"] == arm.base_path + path
    assert body["properties"] == {"format": "rawxml", "value": XML}

    status, _, body = await call("PUT", path, json=policy_body(BLOCK))
    assert (status, body["error"]["code"]) == (400, "ValidationError")

    edited = XML.replace("<base />", "<base /><!-- owner -->", 1)
    foreign = arm.set_policy(("orders",), edited)
    assert foreign != created
    status, _, body = await call("PUT", path, json=policy_body(BLOCK), if_match=created)
    assert (status, body["error"]["code"]) == (412, "PreconditionFailed")
    assert arm.policy("orders") == edited

    status, headers, _ = await call("PUT", path, json=policy_body(BLOCK), if_match=foreign)
    assert status == 200
    updated = headers["ETag"]
    assert updated not in (created, foreign)
    assert arm.policy(f"{arm.base_path}{path}") == BLOCK

    status, _, body = await call("DELETE", path)
    assert (status, body["error"]["code"]) == (400, "ValidationError")
    status, _, body = await call("DELETE", path, if_match=foreign)
    assert (status, body["error"]["code"]) == (412, "PreconditionFailed")
    status, _, _ = await call("DELETE", path, if_match=updated)
    assert status == 200
    assert arm.policy("orders") is None
    status, _, _ = await call("DELETE", path, if_match="*")
    assert status == 204


async def test_policy_scopes_and_validation(call: Arm, arm: FakeArm) -> None:
    """Service and operation scopes work; bad XML and stale ETags are refused."""
    status, _, body = await call("PUT", "/policies/policy", json=policy_body(EXPR))
    assert status == 201
    assert body["type"] == "Microsoft.ApiManagement/service/policies"
    assert arm.policy(None) == EXPR

    op_path = "/apis/orders/operations/get-order/policies/policy"
    status, _, body = await call("PUT", op_path, json=policy_body(BLOCK, "xml"))
    assert status == 201
    assert body["type"] == "Microsoft.ApiManagement/service/apis/operations/policies"
    assert arm.policy(("orders", "get-order")) == BLOCK

    status, _, body = await call("PUT", op_path, json=policy_body(EXPR, "xml"), if_match="*")
    assert (status, body["error"]["code"]) == (400, "ValidationError")
    status, _, body = await call("PUT", "/apis/users/policies/policy", json=policy_body("<x/>"))
    assert (status, body["error"]["code"]) == (400, "ValidationError")
    assert body["error"]["details"][0]["target"] == "representation"
    status, _, body = await call(
        "PUT", "/apis/orders/operations/nope/policies/policy", json=policy_body(XML)
    )
    assert status == 404
    status, _, body = await call("PUT", op_path, json=policy_body(XML), if_match='"stale"')
    assert status == 412
    status, _, body = await call(
        "PUT", "/apis/users/policies/policy", json=policy_body(XML), if_match='"stale"'
    )
    assert status == 412


async def test_subscriptions(call: Arm, arm: FakeArm) -> None:
    """Subscriptions are listed, filtered, suspended with If-Match and re-keyed."""
    status, _, page = await call("GET", "/subscriptions")
    assert status == 200
    assert [s["name"] for s in page["value"]] == ["sub1", "sub2"]
    assert "primaryKey" not in page["value"][0]["properties"]
    assert page["value"][1]["properties"]["scope"] == arm.base_path + "/apis/orders"
    status, _, page = await call(
        "GET", "/subscriptions", params={"$filter": "properties/state eq 'suspended'"}
    )
    assert [s["name"] for s in page["value"]] == ["sub2"]

    status, headers, body = await call("GET", "/subscriptions/sub1")
    assert body["properties"]["state"] == "active"
    etag = headers["ETag"]

    suspend = {"properties": {"state": "suspended", "stateComment": "clampdown"}}
    status, _, body = await call("PATCH", "/subscriptions/sub1", json=suspend)
    assert status == 400
    bad = {"properties": {"state": "paused"}}
    status, _, body = await call("PATCH", "/subscriptions/sub1", json=bad, if_match="*")
    assert (status, body["error"]["code"]) == (400, "ValidationError")
    status, _, body = await call("PATCH", "/subscriptions/sub1", json=suspend, if_match='"x"')
    assert status == 412
    status, headers, body = await call("PATCH", "/subscriptions/sub1", json=suspend, if_match=etag)
    assert status == 200
    assert body["properties"]["stateComment"] == "clampdown"
    assert headers["ETag"] != etag
    assert arm.subscription("sub1")["state"] == "suspended"

    status, _, body = await call("POST", "/subscriptions/sub1/regeneratePrimaryKey")
    assert (status, body) == (204, None)
    assert arm.subscription("sub1")["primaryKey"] != "p1"
    assert arm.subscription("sub1")["secondaryKey"] == "s1"
    status, _, body = await call("POST", "/subscriptions/sub1/listSecrets")
    assert body == {"primaryKey": arm.subscription("sub1")["primaryKey"], "secondaryKey": "s1"}
    status, _, body = await call("GET", "/subscriptions/none")
    assert (status, body["error"]["code"]) == (404, "ResourceNotFound")


async def test_fault_injection(call: Arm, arm: FakeArm) -> None:
    """Scripted faults answer matching ARM (or token) requests, then stop."""
    arm.fail_next(429, method="PUT", retry_after=2)
    status, _, _ = await call("GET", "/apis")
    assert status == 200
    status, headers, body = await call("PUT", "/policies/policy", json=policy_body(XML))
    assert status == 429
    assert headers["Retry-After"] == "2"
    assert body["error"]["code"] == "TooManyRequests"
    assert arm.policy(None) is None
    status, _, _ = await call("PUT", "/policies/policy", json=policy_body(XML))
    assert status == 201

    arm.fail_next(503, path_contains="/subscriptions/sub1", times=2)
    status, body = await get_token(call.http, arm)
    assert status == 200
    for _ in range(2):
        status, _, body = await call("GET", "/subscriptions/sub1")
        assert (status, body["error"]["code"]) == (503, "ServiceUnavailable")
    status, _, _ = await call("GET", "/subscriptions/sub1")
    assert status == 200

    arm.fail_next(500, path_contains="/oauth2/")
    status, body = await get_token(call.http, arm)
    assert (status, body["error"]) == (500, "server_error")
    assert arm.write_count("/policies/policy") == 2


async def test_long_running_write_via_azure_async_operation(call: Arm, arm: FakeArm) -> None:
    """An async write applies only when its status turns Succeeded."""
    arm.async_writes = Lro(polls=2)
    status, headers, body = await call("PUT", "/apis/orders/policies/policy", json=policy_body(XML))
    assert status == 202
    assert headers["Retry-After"] == "0"
    monitor = headers["Azure-AsyncOperation"]
    assert arm.policy("orders") is None
    assert arm.pending_operations == 1
    for _ in range(2):
        status, _, body = await call("GET", "", url=monitor)
        assert body["status"] == "InProgress"
        assert arm.policy("orders") is None
    status, _, body = await call("GET", "", url=monitor)
    assert body["status"] == "Succeeded"
    assert arm.policy("orders") == XML
    status, _, body = await call("GET", "", url=headers["Location"])
    assert status == 200
    assert body["properties"]["value"] == XML


async def test_long_running_write_via_location_and_failure(call: Arm, arm: FakeArm) -> None:
    """Location polling completes a delete; a failed operation changes nothing."""
    etag = arm.set_policy("orders", XML)
    arm.lro_next(Lro(polls=1, headers="location"))
    path = "/apis/orders/policies/policy"
    status, headers, _ = await call("DELETE", path, if_match=etag)
    assert status == 202
    assert "Azure-AsyncOperation" not in headers
    status, _, _ = await call("GET", "", url=headers["Location"])
    assert status == 202
    assert arm.policy("orders") == XML
    status, _, _ = await call("GET", "", url=headers["Location"])
    assert status == 204
    assert arm.policy("orders") is None

    failure = {"code": "Conflict", "message": "nope"}
    arm.lro_next(Lro(polls=0, outcome="Failed", error=failure))
    status, headers, _ = await call("PUT", path, json=policy_body(BLOCK))
    status, _, body = await call("GET", "", url=headers["Azure-AsyncOperation"])
    assert body["status"] == "Failed"
    assert body["error"] == failure
    status, _, body = await call("GET", "", url=headers["Location"])
    assert (status, body["error"]) == (500, failure)
    assert arm.policy("orders") is None
    status, _, _ = await call("PUT", path, json=policy_body(BLOCK))
    assert status == 201


async def test_requests_are_recorded(call: Arm, arm: FakeArm) -> None:
    """Every request is recorded with its query, headers and body."""
    await call("PUT", "/policies/policy", json=policy_body(XML), params={"x": "1"})
    [put] = arm.requests_to("PUT")
    assert put.query == {"api-version": VERSION, "x": "1"}
    assert put.headers["Authorization"] == f"Bearer {call.token}"
    assert put.body == policy_body(XML)
    [token] = arm.requests_to(path_contains="/oauth2/")
    assert token.body["client_secret"] == "s"
    assert arm.write_count() == 1


async def test_operations_head_and_top(call: Arm, arm: FakeArm) -> None:
    """Operations can be put and deleted; HEAD gives the ETag; $top and $filter work."""
    op = {"properties": {"displayName": "Delete", "method": "DELETE", "urlTemplate": "/o/{id}"}}
    status, headers, body = await call("PUT", "/apis/orders/operations/del", json=op)
    assert status == 201
    assert body["type"] == "Microsoft.ApiManagement/service/apis/operations"
    assert arm.operation("orders", "del") is not None
    status, _, _ = await call("PUT", "/apis/orders/operations/del", json=op)
    assert status == 400
    arm.set_policy(("orders", "del"), XML)
    status, _, _ = await call("DELETE", "/apis/orders/operations/del", if_match=headers["ETag"])
    assert status == 200
    assert arm.operation("orders", "del") is None
    assert arm.policy(("orders", "del")) is None

    async with call.http.head(
        arm.service_url + "/subscriptions/sub1",
        params={"api-version": VERSION},
        headers={"Authorization": f"Bearer {call.token}"},
    ) as resp:
        assert resp.status == 200
        assert resp.headers["ETag"] == arm.subscription_etag("sub1")
    status, _, page = await call("GET", "/apis", params={"$top": "1", "$skip": "1"})
    assert [a["name"] for a in page["value"]] == ["users"]
    assert "$skip=2" in page["nextLink"]
    status, _, page = await call("GET", "/apis", params={"$filter": "contains(path, 'et')"})
    assert [a["name"] for a in page["value"]] == ["pets"]
