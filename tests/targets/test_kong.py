"""The kong target against the Admin API fake: containment, merging, undo, errors, keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from clampdown.actions.http import TargetHttp
from clampdown.errors import PermanentError, PreconditionError, TransientError
from clampdown.secrets import SecretRef
from clampdown.targets.driver import Credential
from clampdown.targets.kong import KongDriver, rate_config
from clampdown.targets.settings import KongTarget
from clampdown.testing.kong import FakeKong
from tests.targets.memory import Wanted, block, disable, throttle

TOKEN = "kong-admin-secret"


@pytest.fixture
def kong() -> Iterator[FakeKong]:
    with FakeKong(admin_token=TOKEN).running() as fake:
        fake.add_service("orders", host="orders.internal")
        fake.add_route("orders-read", service="orders", paths=["/orders"])
        fake.add_consumer("mallory")
        fake.add_key("mallory", key="leaked-key-123")
        yield fake


@pytest.fixture
async def driver(kong: FakeKong, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KongDriver]:
    monkeypatch.setenv("KONG_TOKEN", TOKEN)
    settings = KongTarget(admin_url=kong.url, admin_token=SecretRef(env="KONG_TOKEN"))
    async with aiohttp.ClientSession() as session:
        yield KongDriver("edge", settings, TargetHttp(session, settings.origins(), "edge"))


async def test_blocks_merge_into_one_owned_plugin_and_unmerge(
    kong: FakeKong, driver: KongDriver
) -> None:
    wanted = Wanted()
    first = wanted.add(driver.accept(block("203.0.113.7", "service:orders")))
    await driver.reconcile("service:orders", wanted)
    second = wanted.add(driver.accept(block("198.51.100.0/24", "service:orders", "cidr")))
    await driver.reconcile("service:orders", wanted)

    [plugin] = kong.plugins("ip-restriction", service="orders")
    assert plugin["config"]["deny"] == ["198.51.100.0/24", "203.0.113.7"]
    assert plugin["tags"] == ["clampdown", "clampdown-scope:service:orders"]
    assert await driver.enforces(first)
    assert await driver.enforces(second)

    wanted.remove(first)
    await driver.reconcile("service:orders", wanted)
    [plugin] = kong.plugins("ip-restriction", service="orders")
    assert plugin["config"]["deny"] == ["198.51.100.0/24"]
    assert not await driver.enforces(first)

    wanted.remove(second)
    await driver.reconcile("service:orders", wanted)
    assert kong.plugins("ip-restriction") == []


async def test_repeat_reconcile_writes_nothing(kong: FakeKong, driver: KongDriver) -> None:
    wanted = Wanted()
    wanted.add(driver.accept(block("203.0.113.7")))
    await driver.reconcile("*", wanted)
    writes = len([r for r in kong.requests if r.method != "GET"])
    await driver.reconcile("*", wanted)
    assert len([r for r in kong.requests if r.method != "GET"]) == writes
    [plugin] = kong.plugins("ip-restriction")
    assert plugin["service"] is None
    assert plugin["route"] is None


async def test_a_persons_edits_survive(kong: FakeKong, driver: KongDriver) -> None:
    theirs = kong.add_plugin("rate-limiting", {"minute": 1000}, service="orders")
    wanted = Wanted()
    wanted.add(driver.accept(block("203.0.113.7", "service:orders")))
    await driver.reconcile("service:orders", wanted)
    [ours] = kong.plugins("ip-restriction")
    # Someone changes the message of Clampdown's plugin between two containments.
    async with aiohttp.ClientSession() as session:
        resp = await session.patch(
            f"{kong.url}/plugins/{ours['id']}",
            json={"config": {"message": "Go away"}},
            headers={"Kong-Admin-Token": TOKEN},
        )
        assert resp.status == 200
    wanted.add(driver.accept(block("203.0.113.8", "service:orders")))
    await driver.reconcile("service:orders", wanted)

    [ours] = kong.plugins("ip-restriction")
    assert ours["config"]["message"] == "Go away"
    assert ours["config"]["deny"] == ["203.0.113.7", "203.0.113.8"]
    assert kong.plugin(theirs["id"]) == theirs


async def test_an_owners_plugin_on_the_scope_fails_clearly(
    kong: FakeKong, driver: KongDriver
) -> None:
    kong.add_plugin("ip-restriction", {"allow": ["10.0.0.0/8"]}, service="orders")
    wanted = Wanted()
    wanted.add(driver.accept(block("203.0.113.7", "service:orders")))
    with pytest.raises(PermanentError, match=r"does not own.*UNIQUE violation"):
        await driver.reconcile("service:orders", wanted)


async def test_throttle_targets_a_consumer_with_the_strictest_rate(
    kong: FakeKong, driver: KongDriver
) -> None:
    wanted = Wanted()
    slow = wanted.add(driver.accept(throttle("mallory", 100, 60, subject_type="client_id")))
    await driver.reconcile("*", wanted)
    wanted.add(driver.accept(throttle("mallory", 10, 3600, subject_type="client_id")))
    await driver.reconcile("*", wanted)

    [plugin] = kong.plugins("rate-limiting")
    assert plugin["consumer"] == {"id": kong.consumer("mallory")["id"]}
    assert plugin["config"]["hour"] == 10
    assert plugin["config"]["minute"] is None
    assert plugin["config"]["limit_by"] == "consumer"
    assert await driver.enforces(slow)


def test_rates_map_to_the_nearest_window_not_shorter() -> None:
    assert rate_config(5, 1) == {"second": 5}
    assert rate_config(60, 60) == {"minute": 60}
    assert rate_config(30, 30) == {"minute": 60}
    assert rate_config(1, 7200) == {"day": 12}
    assert rate_config(1, 864_000) == {"day": 1}


async def test_ip_throttle_is_refused_with_a_hint(driver: KongDriver) -> None:
    with pytest.raises(PermanentError, match="throttle the consumer"):
        driver.accept(throttle("203.0.113.7", 10, 60))


async def test_disable_a_route_and_enable_it_again(kong: FakeKong, driver: KongDriver) -> None:
    wanted = Wanted()
    spec = wanted.add(driver.accept(disable("route:orders-read")))
    await driver.reconcile(driver.unit(spec), wanted)
    [plugin] = kong.plugins("request-termination", route="orders-read")
    assert plugin["config"]["status_code"] == 403
    assert await driver.enforces(spec)
    wanted.remove(spec)
    await driver.reconcile(driver.unit(spec), wanted)
    assert kong.plugins("request-termination") == []


async def test_disable_a_service_restores_only_what_it_changed(
    kong: FakeKong, driver: KongDriver
) -> None:
    before = kong.service("orders")
    wanted = Wanted()
    spec = wanted.add(driver.accept(disable("service:orders")))
    await driver.reconcile("service:orders", wanted)
    assert kong.service("orders")["enabled"] is False
    assert await driver.enforces(spec)
    wanted.remove(spec)
    await driver.reconcile("service:orders", wanted)
    after = kong.service("orders")
    assert after["enabled"] is True
    assert after["tags"] == before["tags"]

    # A service its owner switched off stays off after Clampdown's undo.
    kong.add_service("legacy", enabled=False)
    spec = wanted.add(driver.accept(disable("service:legacy")))
    await driver.reconcile("service:legacy", wanted)
    wanted.remove(spec)
    await driver.reconcile("service:legacy", wanted)
    assert kong.service("legacy")["enabled"] is False


async def test_revoke_deletes_the_key_and_repeats_safely(
    kong: FakeKong, driver: KongDriver
) -> None:
    credential = Credential(consumer="mallory", key="leaked-key-123")
    assert await driver.credential_state(credential) == "active"
    await driver.revoke(credential)
    assert not kong.has_key("leaked-key-123")
    assert await driver.credential_state(credential) == "revoked"
    await driver.revoke(credential)  # a retry after a crash
    with pytest.raises(PermanentError, match="no consumer"):
        await driver.revoke(Credential(consumer="nobody", key="k"))


async def test_throttling_and_outages_are_transient(kong: FakeKong, driver: KongDriver) -> None:
    wanted = Wanted()
    wanted.add(driver.accept(block("203.0.113.7")))
    kong.fail_next(method="POST", status=429, retry_after=7)
    with pytest.raises(TransientError) as caught:
        await driver.reconcile("*", wanted)
    assert caught.value.retry_after == 7
    kong.fail_next(method="POST", status=503)
    with pytest.raises(TransientError, match="503"):
        await driver.reconcile("*", wanted)
    await driver.reconcile("*", wanted)
    assert len(kong.plugins("ip-restriction")) == 1


async def test_schema_violations_carry_kongs_message(kong: FakeKong, driver: KongDriver) -> None:
    wanted = Wanted()
    # Reaches Kong only if accept() were skipped: Kong itself refuses the address.
    wanted.add(block("not-an-ip"))
    with pytest.raises(PermanentError, match="schema violation"):
        await driver.reconcile("*", wanted)


async def test_a_wrong_admin_token_is_a_precondition(
    kong: FakeKong, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONG_TOKEN", "wrong")
    settings = KongTarget(admin_url=kong.url, admin_token=SecretRef(env="KONG_TOKEN"))
    async with aiohttp.ClientSession() as session:
        driver = KongDriver("edge", settings, TargetHttp(session, settings.origins(), "edge"))
        with pytest.raises(PreconditionError, match="admin_token"):
            await driver.enforces(block("203.0.113.7"))
        [check] = await driver.check()
    assert not check.ok
    assert "401" in check.detail


async def test_check_reads_only(kong: FakeKong, driver: KongDriver) -> None:
    [check] = await driver.check()
    assert check.ok
    assert {r.method for r in kong.requests} == {"GET"}


@pytest.mark.parametrize(
    "scope", ["service:../consumers", "route:a b", "consumer:x", "service:", "svc:orders"]
)
async def test_hostile_scopes_are_refused(driver: KongDriver, scope: str) -> None:
    with pytest.raises(PermanentError, match="scope"):
        driver.accept(block("203.0.113.7", scope))


async def test_hostile_names_never_walk_paths(kong: FakeKong, driver: KongDriver) -> None:
    with pytest.raises(PermanentError):
        await driver.revoke(Credential(consumer="..", key="x"))
    await driver.revoke(Credential(consumer="mallory", key="../../services/orders"))
    assert kong.service("orders") is not None
    [delete] = [r for r in kong.requests if r.method == "DELETE"]
    assert delete.path.startswith("/consumers/mallory/key-auth/")
