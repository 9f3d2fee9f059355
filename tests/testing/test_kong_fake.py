"""FakeKong over real HTTP: entities, lookups, paging, plugin schemas, errors and faults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import ClientSession

from clampdown.testing.kong import FakeKong, KongError

Result = tuple[int, Any, dict[str, str]]


@pytest.fixture
def kong() -> Iterator[FakeKong]:
    with FakeKong().running() as fake:
        yield fake


@pytest.fixture
async def http(kong: FakeKong) -> AsyncIterator[ClientSession]:
    async with ClientSession(kong.url) as session:
        yield session


async def call(http: ClientSession, method: str, path: str, **kwargs: Any) -> Result:
    """Send one request; return the status, the parsed JSON body (or None) and the headers."""
    async with http.request(method, path, **kwargs) as resp:
        text = await resp.text()
        body = await resp.json(content_type=None) if text else None
        return resp.status, body, dict(resp.headers)


def schema_fields(result: Result) -> Any:
    status, body, _ = result
    assert status == 400
    assert body["code"] == 2
    assert body["name"] == "schema violation"
    assert "schema violation" in body["message"]
    return body["fields"]


# --- auth -------------------------------------------------------------------------------------


async def test_admin_token_is_required_when_configured() -> None:
    """Without or with a wrong Kong-Admin-Token: 401 with Kong's message; the right one works."""
    with FakeKong(admin_token="s3cret").running() as fake:
        async with ClientSession(fake.url) as http:
            for headers in ({}, {"Kong-Admin-Token": "wrong"}):
                status, body, _ = await call(http, "GET", "/services", headers=headers)
                assert status == 401
                assert body == {
                    "message": "Invalid credentials. Token or User credentials required"
                }
            status, body, _ = await call(
                http, "GET", "/services", headers={"Kong-Admin-Token": "s3cret"}
            )
            assert (status, body) == (200, {"data": [], "next": None})


# --- services ---------------------------------------------------------------------------------


async def test_service_create_has_kong_defaults(http: ClientSession) -> None:
    status, body, headers = await call(
        http, "POST", "/services", json={"name": "orders", "host": "orders.internal"}
    )
    assert status == 201
    assert headers["Content-Type"].startswith("application/json")
    assert body["enabled"] is True
    assert (body["protocol"], body["port"], body["retries"]) == ("http", 80, 5)
    assert body["tags"] is None
    assert len(body["id"]) == 36


async def test_service_url_shorthand_sets_protocol_host_port_path(http: ClientSession) -> None:
    _, body, _ = await call(http, "POST", "/services", json={"url": "https://api.test/v1"})
    assert (body["protocol"], body["host"], body["port"], body["path"]) == (
        "https",
        "api.test",
        443,
        "/v1",
    )


async def test_service_lookup_by_id_or_name_and_patch(kong: FakeKong, http: ClientSession) -> None:
    """PATCH {"enabled": false} answers 200 with the whole entity and keeps other fields."""
    svc = kong.add_service("orders", host="orders.internal")
    for key in (svc["id"], "orders"):
        status, body, _ = await call(http, "GET", f"/services/{key}")
        assert (status, body["id"]) == (200, svc["id"])
    status, body, _ = await call(http, "PATCH", "/services/orders", json={"enabled": False})
    assert status == 200
    assert body["enabled"] is False
    assert body["host"] == "orders.internal"
    assert kong.service("orders")["enabled"] is False  # type: ignore[index]


async def test_missing_entity_is_404_but_delete_is_204(http: ClientSession) -> None:
    for method in ("GET", "PATCH"):
        status, body, _ = await call(http, method, "/services/nope", json={})
        assert (status, body) == (404, {"message": "Not found"})
    status, body, _ = await call(http, "DELETE", "/services/nope")
    assert (status, body) == (204, None)


async def test_service_schema_and_unique_violations(kong: FakeKong, http: ClientSession) -> None:
    kong.add_service("orders")
    fields = schema_fields(await call(http, "POST", "/services", json={"name": "x"}))
    assert fields == {"host": "required field missing"}
    result = await call(http, "POST", "/services", json={"host": "h", "enabled": "no", "color": 1})
    assert schema_fields(result) == {"enabled": "expected a boolean", "color": "unknown field"}
    assert result[1]["message"] == (
        "2 schema violations (color: unknown field; enabled: expected a boolean)"
    )
    status, body, _ = await call(http, "POST", "/services", json={"name": "orders", "host": "h"})
    assert status == 409
    assert body == {
        "code": 5,
        "name": "unique constraint violation",
        "message": "UNIQUE violation detected on '{name=\"orders\"}'",
        "fields": {"name": "orders"},
    }


async def test_put_upserts_by_name(http: ClientSession) -> None:
    status, created, _ = await call(http, "PUT", "/services/orders", json={"host": "a"})
    assert (status, created["name"]) == (200, "orders")
    status, replaced, _ = await call(http, "PUT", "/services/orders", json={"host": "b"})
    assert (status, replaced["id"], replaced["host"]) == (200, created["id"], "b")


async def test_deleting_a_service_with_routes_is_refused(
    kong: FakeKong, http: ClientSession
) -> None:
    kong.add_service("orders")
    kong.add_route("r", service="orders")
    status, body, _ = await call(http, "DELETE", "/services/orders")
    assert status == 400
    assert body["name"] == "foreign key violation"
    assert body["fields"] == {"@referenced_by": "routes"}
    assert kong.service("orders") is not None


# --- routes -----------------------------------------------------------------------------------


async def test_routes_nested_under_a_service(kong: FakeKong, http: ClientSession) -> None:
    svc = kong.add_service("orders")
    status, route, _ = await call(
        http, "POST", "/services/orders/routes", json={"name": "r1", "paths": ["/orders"]}
    )
    assert status == 201
    assert route["service"] == {"id": svc["id"]}
    assert route["protocols"] == ["http", "https"]
    _, listed, _ = await call(http, "GET", f"/services/{svc['id']}/routes")
    assert [r["name"] for r in listed["data"]] == ["r1"]
    status, body, _ = await call(http, "PATCH", "/routes/r1", json={"paths": ["/v2"]})
    assert (status, body["paths"]) == (200, ["/v2"])
    status, _, _ = await call(http, "POST", "/services/nope/routes", json={"paths": ["/"]})
    assert status == 404
    assert [r["name"] for r in kong.route_list(service="orders")] == ["r1"]


async def test_route_validation(kong: FakeKong, http: ClientSession) -> None:
    fields = schema_fields(await call(http, "POST", "/routes", json={"name": "r"}))
    assert fields == {
        "@entity": [
            "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"
        ]
    }
    fields = schema_fields(await call(http, "POST", "/routes", json={"paths": ["orders"]}))
    assert fields == {"paths": ["should start with: / (fixed path) or ~/ (regex path)"]}


async def test_route_foreign_keys(kong: FakeKong, http: ClientSession) -> None:
    """An unknown service id is a foreign key violation; a service name is resolved."""
    missing = "00000000-0000-4000-8000-000000000001"
    status, body, _ = await call(
        http, "POST", "/routes", json={"paths": ["/"], "service": {"id": missing}}
    )
    assert (status, body["code"], body["fields"]) == (400, 4, {"service": {"id": missing}})
    svc = kong.add_service("orders")
    _, route, _ = await call(
        http, "POST", "/routes", json={"paths": ["/"], "service": {"name": "orders"}}
    )
    assert route["service"] == {"id": svc["id"]}
    status, body, _ = await call(
        http, "POST", "/routes", json={"paths": ["/"], "service": {"name": "zzz"}}
    )
    assert (status, body["code"]) == (400, 13)


async def test_deleting_a_route_deletes_its_plugins(kong: FakeKong, http: ClientSession) -> None:
    kong.add_route("r")
    kong.add_plugin("request-termination", {"status_code": 403}, route="r")
    status, _, _ = await call(http, "DELETE", "/routes/r")
    assert status == 204
    assert kong.plugins() == []
    assert kong.route("r") is None


# --- consumers and key-auth -------------------------------------------------------------------


async def test_consumers(kong: FakeKong, http: ClientSession) -> None:
    status, alice, _ = await call(http, "POST", "/consumers", json={"username": "alice"})
    assert (status, alice["custom_id"]) == (201, None)
    fields = schema_fields(await call(http, "POST", "/consumers", json={}))
    assert fields == {
        "@entity": ["at least one of these fields must be non-empty: 'custom_id', 'username'"]
    }
    status, body, _ = await call(http, "POST", "/consumers", json={"username": "alice"})
    assert (status, body["fields"]) == (409, {"username": "alice"})
    kong.add_consumer(custom_id="ext-7")
    _, found, _ = await call(http, "GET", "/consumers", params={"custom_id": "ext-7"})
    assert [c["custom_id"] for c in found["data"]] == ["ext-7"]
    status, body, _ = await call(http, "GET", "/consumers/alice")
    assert (status, body["id"]) == (200, alice["id"])


async def test_key_auth_credentials(kong: FakeKong, http: ClientSession) -> None:
    """Create (given or generated key), look up by key or id, revoke; 409 on a reused key."""
    alice = kong.add_consumer("alice")
    status, cred, _ = await call(http, "POST", "/consumers/alice/key-auth", json={"key": "k-1"})
    assert status == 201
    assert (cred["key"], cred["consumer"]) == ("k-1", {"id": alice["id"]})
    _, generated, _ = await call(http, "POST", f"/consumers/{alice['id']}/key-auth", json={})
    assert len(generated["key"]) >= 32
    status, body, _ = await call(http, "POST", "/consumers/alice/key-auth", json={"key": "k-1"})
    assert status == 409
    assert body["message"] == "UNIQUE violation detected on '{key=\"k-1\"}'"
    for key in ("k-1", cred["id"]):
        status, body, _ = await call(http, "GET", f"/consumers/alice/key-auth/{key}")
        assert (status, body["id"]) == (200, cred["id"])
    _, listed, _ = await call(http, "GET", "/consumers/alice/key-auth")
    assert {c["key"] for c in listed["data"]} == {"k-1", generated["key"]}
    status, _, _ = await call(http, "DELETE", "/consumers/alice/key-auth/k-1")
    assert status == 204
    assert not kong.has_key("k-1")
    assert kong.has_key(generated["key"])


async def test_key_auth_paths_that_miss_are_404(kong: FakeKong, http: ClientSession) -> None:
    """Like Kong's key-auth API: an unknown consumer, key, or another consumer's key is 404."""
    kong.add_consumer("alice")
    kong.add_consumer("bob")
    kong.add_key("bob", key="bobs-key")
    for path in (
        "/consumers/nobody/key-auth/bobs-key",
        "/consumers/alice/key-auth/bobs-key",
        "/consumers/alice/key-auth/gone",
    ):
        for method in ("GET", "DELETE"):
            status, body, _ = await call(http, method, path)
            assert (status, body) == (404, {"message": "Not found"}), (method, path)
    assert kong.has_key("bobs-key")


async def test_deleting_a_consumer_deletes_keys_and_plugins(
    kong: FakeKong, http: ClientSession
) -> None:
    kong.add_consumer("alice")
    kong.add_key("alice", key="k")
    kong.add_plugin("rate-limiting", {"minute": 5}, consumer="alice")
    status, _, _ = await call(http, "DELETE", "/consumers/alice")
    assert status == 204
    assert (kong.credentials(), kong.plugins(), kong.consumers()) == ([], [], [])


# --- plugins ----------------------------------------------------------------------------------


async def test_block_ip_on_a_service_then_patch_and_delete(
    kong: FakeKong, http: ClientSession
) -> None:
    """The contract's block-IP flow; PATCH replaces config.deny and keeps the other config."""
    svc = kong.add_service("orders")
    status, plugin, _ = await call(
        http,
        "POST",
        "/services/orders/plugins",
        json={
            "name": "ip-restriction",
            "config": {"deny": ["203.0.113.7"], "message": "blocked"},
            "tags": ["clampdown"],
        },
    )
    assert status == 201
    assert plugin["service"] == {"id": svc["id"]}
    assert (plugin["route"], plugin["consumer"], plugin["enabled"]) == (None, None, True)
    assert plugin["config"]["allow"] is None
    status, patched, _ = await call(
        http,
        "PATCH",
        f"/plugins/{plugin['id']}",
        json={"config": {"deny": ["203.0.113.7", "198.51.100.0/24"]}},
    )
    assert status == 200
    assert patched["config"]["deny"] == ["203.0.113.7", "198.51.100.0/24"]
    assert patched["config"]["message"] == "blocked"
    assert patched["tags"] == ["clampdown"]
    assert kong.plugins("ip-restriction", service="orders")[0]["config"] == patched["config"]
    assert kong.plugins(service="unknown") == []
    for _ in range(2):
        status, _, _ = await call(http, "DELETE", f"/plugins/{plugin['id']}")
        assert status == 204
    assert kong.plugins() == []


async def test_patch_that_empties_the_only_list_is_refused(
    kong: FakeKong, http: ClientSession
) -> None:
    plugin = kong.add_plugin("ip-restriction", {"deny": ["203.0.113.7"]})
    result = await call(http, "PATCH", f"/plugins/{plugin['id']}", json={"config": {"deny": []}})
    assert schema_fields(result) == {
        "@entity": ["at least one of these fields must be non-empty: 'config.allow', 'config.deny'"]
    }
    assert kong.plugin(plugin["id"])["config"]["deny"] == ["203.0.113.7"]  # type: ignore[index]


async def test_second_plugin_with_same_name_and_scope_is_409(
    kong: FakeKong, http: ClientSession
) -> None:
    svc = kong.add_service("orders")
    body = {"name": "ip-restriction", "config": {"deny": ["203.0.113.7"]}}
    assert (await call(http, "POST", "/services/orders/plugins", json=body))[0] == 201
    status, error, _ = await call(http, "POST", "/services/orders/plugins", json=body)
    assert status == 409
    assert error["code"] == 5
    assert error["fields"] == {
        "consumer": None,
        "name": "ip-restriction",
        "route": None,
        "service": {"id": svc["id"]},
    }
    assert error["message"] == (
        'UNIQUE violation detected on \'{consumer=null,name="ip-restriction",'
        f'route=null,service={{id="{svc["id"]}"}}}}\''
    )
    assert (await call(http, "POST", "/plugins", json=body))[0] == 201  # global is another scope


async def test_plugin_scopes(kong: FakeKong, http: ClientSession) -> None:
    """Plugins on routes and consumers; nested GET through the wrong parent is 404."""
    kong.add_service("orders")
    route = kong.add_route("r", service="orders")
    alice = kong.add_consumer("alice")
    body = {"name": "rate-limiting", "config": {"minute": 60, "limit_by": "ip"}}
    status, on_route, _ = await call(http, "POST", "/routes/r/plugins", json=body)
    assert (status, on_route["route"]) == (201, {"id": route["id"]})
    status, on_consumer, _ = await call(http, "POST", "/consumers/alice/plugins", json=body)
    assert (status, on_consumer["consumer"]) == (201, {"id": alice["id"]})
    _, listed, _ = await call(http, "GET", "/routes/r/plugins")
    assert [p["id"] for p in listed["data"]] == [on_route["id"]]
    status, _, _ = await call(http, "GET", f"/services/orders/plugins/{on_route['id']}")
    assert status == 404
    status, found, _ = await call(http, "GET", f"/routes/r/plugins/{on_route['id']}")
    assert (status, found["id"]) == (200, on_route["id"])


async def test_rate_limiting_defaults(http: ClientSession) -> None:
    _, plugin, _ = await call(
        http, "POST", "/plugins", json={"name": "rate-limiting", "config": {"minute": 60}}
    )
    config = plugin["config"]
    assert (config["limit_by"], config["policy"], config["error_code"]) == (
        "consumer",
        "local",
        429,
    )
    assert config["second"] is None


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            {"name": "no-such-plugin"},
            {
                "name": "plugin 'no-such-plugin' not enabled; add it to the 'plugins' "
                "configuration property"
            },
        ),
        ({"config": {}}, {"name": "required field missing"}),
        (
            {"name": "ip-restriction", "config": {}},
            {
                "@entity": [
                    "at least one of these fields must be non-empty: 'config.allow', 'config.deny'"
                ]
            },
        ),
        (
            {"name": "ip-restriction", "config": {"deny": ["10.0.0.1", "not-an-ip"]}},
            {"config": {"deny": [None, "invalid ip or cidr range: 'not-an-ip'"]}},
        ),
        (
            {"name": "ip-restriction", "config": {"deny": ["10.0.0.0/33"]}},
            {"config": {"deny": ["invalid ip or cidr range: '10.0.0.0/33'"]}},
        ),
        (
            {"name": "rate-limiting", "config": {"limit_by": "ip"}},
            {
                "@entity": [
                    "at least one of these fields must be non-empty: 'config.second', "
                    "'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'"
                ]
            },
        ),
        (
            {"name": "rate-limiting", "config": {"minute": 5, "limit_by": "user"}},
            {
                "config": {
                    "limit_by": "expected one of: consumer, credential, ip, service, header, "
                    "path, consumer-group"
                }
            },
        ),
        (
            {"name": "rate-limiting", "config": {"minute": 5, "limit_by": "header"}},
            {"config": {"header_name": "required field missing"}},
        ),
        (
            {"name": "rate-limiting", "config": {"minute": "60"}},
            {"config": {"minute": "expected a number"}},
        ),
        (
            {"name": "request-termination", "config": {"status_code": 600}},
            {"config": {"status_code": "value should be between 100 and 599"}},
        ),
        (
            {"name": "request-termination", "config": {"status_code": 99}},
            {"config": {"status_code": "value should be between 100 and 599"}},
        ),
        (
            {"name": "ip-restriction", "config": {"deny": ["10.0.0.1"], "colour": "red"}},
            {"config": {"colour": "unknown field"}},
        ),
        (
            {"name": "key-auth", "consumer": {"id": "not-a-uuid"}},
            {"consumer": {"id": "expected a valid UUID"}},
        ),
    ],
)
async def test_plugin_schema_violations(
    http: ClientSession, body: dict[str, Any], fields: dict[str, Any]
) -> None:
    assert schema_fields(await call(http, "POST", "/plugins", json=body)) == fields


async def test_key_auth_plugin_cannot_target_a_consumer(
    kong: FakeKong, http: ClientSession
) -> None:
    kong.add_consumer("alice")
    result = await call(http, "POST", "/consumers/alice/plugins", json={"name": "key-auth"})
    assert schema_fields(result) == {"consumer": "value must be null"}


async def test_request_termination_on_a_route(kong: FakeKong, http: ClientSession) -> None:
    kong.add_route("r")
    body = {"name": "request-termination", "config": {"status_code": 403, "message": "Disabled"}}
    status, plugin, _ = await call(http, "POST", "/routes/r/plugins", json=body)
    assert status == 201
    assert plugin["config"]["status_code"] == 403
    assert plugin["config"]["echo"] is False


async def test_form_bodies_are_read_like_kong(http: ClientSession) -> None:
    """Dotted keys nest, repeated keys make arrays, numbers are inferred from the schema."""
    status, plugin, _ = await call(
        http,
        "POST",
        "/plugins",
        data=[
            ("name", "ip-restriction"),
            ("config.deny", "203.0.113.7"),
            ("config.deny", "203.0.113.8"),
            ("config.status", "403"),
        ],
    )
    assert status == 201
    assert plugin["config"]["deny"] == ["203.0.113.7", "203.0.113.8"]
    assert plugin["config"]["status"] == 403


async def test_unparsable_json_is_400(http: ClientSession) -> None:
    status, body, _ = await call(
        http, "POST", "/plugins", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert (status, body) == (400, {"message": "Cannot parse JSON body"})


# --- lists ------------------------------------------------------------------------------------


async def test_paging_follows_next_until_null(kong: FakeKong, http: ClientSession) -> None:
    for i in range(5):
        kong.add_consumer(f"user-{i}")
    seen: list[str] = []
    path: str | None = "/consumers?size=2"
    pages = 0
    while path is not None:
        status, page, _ = await call(http, "GET", path)
        assert status == 200
        seen += [c["username"] for c in page["data"]]
        assert len(page["data"]) <= 2
        if page["next"] is not None:
            assert page["next"].startswith("/consumers?offset=")
            assert page["offset"]
        path = page["next"]
        pages += 1
    assert pages == 3
    assert sorted(seen) == [f"user-{i}" for i in range(5)]


async def test_default_page_size_is_100(kong: FakeKong, http: ClientSession) -> None:
    for i in range(101):
        kong.add_consumer(f"user-{i}")
    _, page, _ = await call(http, "GET", "/consumers")
    assert len(page["data"]) == 100
    assert page["next"] is not None


async def test_tag_filters_and_or(kong: FakeKong, http: ClientSession) -> None:
    """`tags=a,b` needs both tags, `tags=a/b` either; paging keeps the filter."""
    kong.add_plugin("ip-restriction", {"deny": ["10.0.0.1"]}, tags=["clampdown", "rem-1"])
    kong.add_service("s")
    kong.add_plugin("ip-restriction", {"deny": ["10.0.0.2"]}, service="s", tags=["clampdown"])
    kong.add_plugin("rate-limiting", {"minute": 1}, tags=["other"])

    async def names(query: str) -> list[list[str]]:
        _, page, _ = await call(http, "GET", f"/plugins?{query}")
        return [p["config"].get("deny") or ["rl"] for p in page["data"]]

    assert await names("tags=clampdown,rem-1") == [["10.0.0.1"]]
    assert await names("tags=clampdown") == [["10.0.0.1"], ["10.0.0.2"]]
    assert await names("tags=rem-1/other") == [["10.0.0.1"], ["rl"]]
    _, page, _ = await call(http, "GET", "/plugins?tags=clampdown&size=1")
    assert "tags=clampdown" in page["next"]
    _, second, _ = await call(http, "GET", page["next"])
    assert [p["config"]["deny"] for p in second["data"]] == [["10.0.0.2"]]
    assert second["next"] is None


async def test_bad_size_and_offset(http: ClientSession) -> None:
    status, body, _ = await call(http, "GET", "/services?size=abc")
    assert (status, body["code"], body["name"]) == (400, 9, "invalid size")
    status, body, _ = await call(http, "GET", "/services?size=1001")
    assert (status, body["code"]) == (400, 9)
    status, body, _ = await call(http, "GET", "/services?offset=%21%21")
    assert (status, body["code"], body["name"]) == (400, 7, "invalid offset")


# --- faults, log, seeding -----------------------------------------------------------------------


async def test_fail_next_matches_method_and_path_and_changes_nothing(
    kong: FakeKong, http: ClientSession
) -> None:
    kong.add_service("orders")
    kong.fail_next(method="patch", path_contains="/services/", status=503, retry_after=7, times=2)
    status, _, _ = await call(http, "GET", "/services/orders")
    assert status == 200
    for _ in range(2):
        status, body, headers = await call(
            http, "PATCH", "/services/orders", json={"enabled": False}
        )
        assert status == 503
        assert set(body) == {"message"}
        assert headers["Retry-After"] == "7"
    assert kong.service("orders")["enabled"] is True  # type: ignore[index]
    status, _, _ = await call(http, "PATCH", "/services/orders", json={"enabled": False})
    assert status == 200


async def test_fail_next_429_and_500(kong: FakeKong, http: ClientSession) -> None:
    kong.fail_next(status=429)
    kong.fail_next(status=500, message="database down")
    status, body, headers = await call(http, "GET", "/plugins")
    assert (status, body) == (429, {"message": "API rate limit exceeded"})
    assert "Retry-After" not in headers
    status, body, _ = await call(http, "POST", "/plugins", json={"name": "key-auth"})
    assert (status, body) == (500, {"message": "database down"})
    assert kong.plugins() == []
    assert (await call(http, "GET", "/plugins"))[0] == 200


async def test_requests_are_logged(kong: FakeKong, http: ClientSession) -> None:
    kong.fail_next(status=503)
    await call(http, "POST", "/consumers?x=1", json={"username": "a"}, headers={"X-T": "1"})
    await call(http, "POST", "/consumers", json={"username": "a"})
    first, second = kong.requests
    assert (first.method, first.path, first.query, first.status) == (
        "POST",
        "/consumers",
        {"x": "1"},
        503,
    )
    assert first.json == {"username": "a"}
    assert first.headers["X-T"] == "1"
    assert second.status == 201


def test_seeding_raises_what_kong_would_answer(kong: FakeKong) -> None:
    kong.add_service("orders")
    with pytest.raises(KongError) as conflict:
        kong.add_service("orders")
    assert conflict.value.status == 409
    with pytest.raises(KongError) as invalid:
        kong.add_plugin("ip-restriction", {})
    assert invalid.value.status == 400
    with pytest.raises(KongError) as missing:
        kong.add_key("nobody")
    assert missing.value.status == 404


async def test_root_and_unknown_paths(http: ClientSession) -> None:
    status, info, _ = await call(http, "GET", "/")
    assert status == 200
    assert info["version"].startswith("3.")
    status, body, _ = await call(http, "GET", "/nowhere")
    assert (status, body) == (404, {"message": "Not found"})
    status, body, _ = await call(http, "DELETE", "/services")
    assert (status, body) == (405, {"message": "Method not allowed"})
