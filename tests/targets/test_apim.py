"""The azure-apim driver against FakeArm over real HTTP: policies, tokens, faults, credentials."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from clampdown.actions.contract import ContainmentSpec
from clampdown.actions.http import TargetHttp
from clampdown.errors import ConfigError, PermanentError, TransientError
from clampdown.secrets import SecretRef
from clampdown.targets.azure.apim import ApimDriver
from clampdown.targets.driver import Credential
from clampdown.targets.settings import AzureApimTarget, Probe
from clampdown.testing.arm import FakeArm, Lro

SECRET = "s3cret-Value-8Q~xyz"
ENV = "CLAMPDOWN_TEST_APIM_SECRET"
IP = "203.0.113.7"
OTHER_IP = "198.51.100.9"

OWNER = """<policies>
    <inbound>
        <base />
        <set-header name="X-Tier" exists-action="override">
            <value>@(context.Request.Headers.GetValueOrDefault("X-Tier", "") + "<b>")</value>
        </set-header>
    </inbound>
    <backend>
        <base />
    </backend>
    <outbound>
        <base />
    </outbound>
    <on-error>
        <base />
    </on-error>
</policies>"""

OWNER_BLOCKED = """<policies>
    <inbound>
        <!-- clampdown:begin: managed by Clampdown, do not edit -->
        <ip-filter action="forbid">
            <address>203.0.113.7</address>
        </ip-filter>
        <!-- clampdown:end -->
        <base />
        <set-header name="X-Tier" exists-action="override">
            <value>@(context.Request.Headers.GetValueOrDefault("X-Tier", "") + "<b>")</value>
        </set-header>
    </inbound>
    <backend>
        <base />
    </backend>
    <outbound>
        <base />
    </outbound>
    <on-error>
        <base />
    </on-error>
</policies>"""


def spec(kind: str, subject_type: str, subject: str, **extra: Any) -> ContainmentSpec:
    return ContainmentSpec(kind=kind, subject_type=subject_type, subject=subject, **extra)


def block(ip: str = IP, scope: str = "orders") -> ContainmentSpec:
    return spec("block", "ip", ip, scope=scope)


class Store:
    """The containments active on the target, as the store would answer `wanted`."""

    def __init__(self, driver: ApimDriver) -> None:
        self.driver = driver
        self.specs: list[ContainmentSpec] = []
        self.on_read: Callable[[], object] | None = None

    async def wanted(self, scope: str | None) -> list[ContainmentSpec]:
        if self.on_read is not None:
            hook, self.on_read = self.on_read, None
            hook()
        return [s for s in self.specs if scope is None or s.scope == scope]

    async def contain(self, request: ContainmentSpec) -> ContainmentSpec:
        accepted = self.driver.accept(request)
        self.specs.append(accepted)
        await self.driver.reconcile(self.driver.unit(accepted), self.wanted)
        return accepted

    async def lift(self, accepted: ContainmentSpec) -> None:
        self.specs.remove(accepted)
        await self.driver.reconcile(self.driver.unit(accepted), self.wanted)


def settings_for(arm: FakeArm, **overrides: Any) -> AzureApimTarget:
    values: dict[str, Any] = {
        "tenant_id": arm.tenant,
        "client_id": arm.client_id,
        "client_secret": SecretRef(env=ENV),
        "subscription_id": arm.subscription_id,
        "resource_group": arm.resource_group,
        "service_name": arm.service,
        "management_url": arm.url,
        "login_url": arm.url,
        "timeout": 5,
        **overrides,
    }
    return AzureApimTarget(**values)


@pytest.fixture
def arm() -> Iterator[FakeArm]:
    fake = FakeArm(tenant="t", client_id="c", client_secret=SECRET)
    fake.add_api("orders")
    fake.add_operation("orders", "get-order", "GET", "/orders/{id}")
    fake.add_api("users")
    fake.add_subscription("sub1", primary_key="p1", secondary_key="s1")
    with fake.running() as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def make(
    arm: FakeArm, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., ApimDriver]:
    monkeypatch.setenv(ENV, SECRET)

    def build(**overrides: Any) -> ApimDriver:
        settings = settings_for(arm, **overrides)
        return ApimDriver("apim", settings, TargetHttp(session, settings.origins(), "apim"))

    return build


@pytest.fixture
def driver(make: Callable[..., ApimDriver]) -> ApimDriver:
    return make()


@pytest.fixture
def store(driver: ApimDriver) -> Store:
    return Store(driver)


SUB1 = Credential(subscription="sub1")


# --- tokens -----------------------------------------------------------------------------------


async def test_token_is_cached_renewed_before_expiry_and_refetched_after_a_401(
    driver: ApimDriver, arm: FakeArm
) -> None:
    """One sign-in serves many calls; expiry (by clock or by ARM's 401) fetches one more."""
    for _ in range(3):
        assert await driver.credential_state(SUB1) == "active"
    assert arm.token_requests == 1
    [token_call] = arm.requests_to("POST", "/oauth2/")
    assert token_call.body == {
        "client_id": "c",
        "client_secret": SECRET,
        "grant_type": "client_credentials",
        "scope": "https://management.azure.com/.default",
    }

    arm.expire_tokens()
    assert await driver.credential_state(SUB1) == "active"
    assert arm.token_requests == 2
    gets = arm.requests_to("GET", "/subscriptions/sub1")
    assert len(gets) == 5  # the 401 and the call sent again with a new token

    now = driver.tokens.clock()
    driver.tokens.clock = lambda: now + 3599 - 300  # within 5 minutes of expiry
    assert await driver.credential_state(SUB1) == "active"
    assert arm.token_requests == 3
    assert len(arm.requests_to("GET", "/subscriptions/sub1")) == 6


async def test_concurrent_calls_share_one_sign_in(driver: ApimDriver, arm: FakeArm) -> None:
    states = await asyncio.gather(*(driver.credential_state(SUB1) for _ in range(5)))
    assert states == ["active"] * 5
    assert arm.token_requests == 1


async def test_bad_secret_is_permanent_and_names_the_setting_not_the_secret(
    make: Callable[..., ApimDriver], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "wrong-secret-value-123")
    with pytest.raises(PermanentError) as caught:
        await make().credential_state(SUB1)
    message = str(caught.value)
    assert "invalid_client" in message
    assert "client_secret" in message
    assert "AADSTS7000215" in message
    assert "wrong-secret-value-123" not in message
    assert SECRET not in message

    monkeypatch.delenv(ENV)
    with pytest.raises(ConfigError, match=f"client_secret: environment variable {ENV}"):
        await make().credential_state(SUB1)


async def test_unknown_tenant_and_unavailable_sign_in(
    make: Callable[..., ApimDriver], arm: FakeArm
) -> None:
    with pytest.raises(PermanentError, match="tenant_id"):
        await make(tenant_id="nobody").credential_state(SUB1)
    arm.fail_next(503, path_contains="/oauth2/", retry_after=4)
    with pytest.raises(TransientError, match="temporarily_unavailable") as caught:
        await make().credential_state(SUB1)
    assert caught.value.retry_after == 4


# --- policies ---------------------------------------------------------------------------------


async def test_block_on_an_api_keeps_the_owners_policy_and_undo_restores_it(
    store: Store, driver: ApimDriver, arm: FakeArm
) -> None:
    """Merge on block, unmerge on lift, and the owner's policy back byte for byte at the end."""
    etag = arm.set_policy("orders", OWNER)
    first = await store.contain(block())
    assert first.scope == "orders"
    assert arm.policy("orders") == OWNER_BLOCKED
    assert await driver.enforces(first)
    [put] = arm.requests_to("PUT", "/apis/orders/policies/policy")
    assert put.headers["If-Match"] == etag
    assert put.query == {"api-version": "2022-08-01"}
    assert put.body == {"properties": {"format": "rawxml", "value": OWNER_BLOCKED}}
    read = arm.requests_to("GET", "/apis/orders/policies/policy")[0]
    assert read.query == {"api-version": "2022-08-01", "format": "rawxml"}

    second = await store.contain(block(OTHER_IP))
    merged = arm.policy("orders")
    assert merged is not None
    assert merged.count("<ip-filter") == 1
    assert f"<address>{OTHER_IP}</address>\n            <address>{IP}</address>" in merged
    assert merged.endswith(OWNER_BLOCKED[OWNER_BLOCKED.index("<!-- clampdown:end -->") :])

    await store.lift(second)
    assert arm.policy("orders") == OWNER_BLOCKED
    await store.lift(first)
    assert arm.policy("orders") == OWNER
    assert not await driver.enforces(first)

    writes = arm.write_count()
    await driver.reconcile("orders", store.wanted)
    assert arm.write_count() == writes  # nothing to change, nothing written


async def test_policy_created_where_none_existed_is_deleted_on_undo(
    store: Store, arm: FakeArm
) -> None:
    accepted = await store.contain(block(scope="users"))
    created = arm.policy("users")
    assert created is not None
    assert "<!-- clampdown:created -->" in created
    assert f"<address>{IP}</address>" in created
    [put] = arm.requests_to("PUT", "/apis/users/policies/policy")
    assert "If-Match" not in put.headers

    await store.lift(accepted)
    assert arm.policy("users") is None
    [delete] = arm.requests_to("DELETE", "/apis/users/policies/policy")
    assert delete.headers["If-Match"]


async def test_service_and_operation_scopes(store: Store, driver: ApimDriver, arm: FakeArm) -> None:
    everywhere = await store.contain(block(scope="*"))
    assert everywhere.scope == "*"
    assert f"<address>{IP}</address>" in (arm.policy(None) or "")
    assert arm.requests_to("PUT", "/service/apim/policies/policy")

    operation = await store.contain(spec("block", "cidr", "10.0.0.0/24", scope="orders/get-order"))
    held = arm.policy(("orders", "get-order")) or ""
    assert '<address-range from="10.0.0.0" to="10.0.0.255" />' in held
    assert await driver.enforces(operation)
    assert "address-range" not in (arm.policy(None) or "")
    assert not await driver.enforces(spec("block", "cidr", "10.0.0.0/24", scope="*"))
    assert arm.policy("orders") is None

    await store.lift(everywhere)
    await store.lift(operation)
    assert arm.policy(None) is None
    assert arm.policy(("orders", "get-order")) is None


async def test_unknown_api_is_permanent_and_its_undo_a_no_op(store: Store, arm: FakeArm) -> None:
    with pytest.raises(PermanentError, match="404 ResourceNotFound: Api not found"):
        await store.contain(block(scope="ghost"))
    store.specs.clear()
    await store.driver.reconcile("ghost", store.wanted)
    assert arm.write_count() == 1


async def test_arm_ids_name_scopes_of_this_service_only(driver: ApimDriver, arm: FakeArm) -> None:
    api_id = f"{arm.base_path}/apis/orders"
    assert driver.accept(block(scope=api_id)).scope == "orders"
    assert driver.accept(block(scope=f"{api_id}/operations/get-order")).scope == "orders/get-order"
    assert driver.accept(block(scope=arm.base_path)).scope == "*"
    other = arm.base_path.replace("/service/apim", "/service/other") + "/apis/orders"
    with pytest.raises(PermanentError, match="another API Management service"):
        driver.accept(block(scope=other))
    for hostile in ("/apis/..", "/apis/orders/policies/policy", "/products/p", "/apis/orders/"):
        with pytest.raises(PermanentError):
            driver.accept(block(scope=arm.base_path + hostile))
    assert arm.requests == []


async def test_throttle_caps_the_renewal_period_at_300_seconds(
    store: Store, driver: ApimDriver, arm: FakeArm
) -> None:
    hourly = await store.contain(
        spec("throttle", "ip", IP, scope="orders", rate=600, period_seconds=3600)
    )
    policy = arm.policy("orders") or ""
    assert (
        '<rate-limit-by-key calls="50" renewal-period="300" '
        'counter-key="@(context.Request.IpAddress)" />'
    ) in policy
    assert await driver.enforces(hourly)
    assert not await driver.enforces(block())
    assert await driver.probe(hourly) is None

    keyed = await store.contain(
        spec("throttle", "subscription", "sub1", scope="orders", rate=10, period_seconds=60)
    )
    assert await driver.enforces(keyed)
    await store.lift(hourly)
    await store.lift(keyed)
    assert arm.policy("orders") is None


async def test_disable_an_operation_then_enable_it(
    store: Store, driver: ApimDriver, arm: FakeArm
) -> None:
    disabled = await store.contain(
        spec("disable", "endpoint", "orders/get-order", scope="orders/get-order")
    )
    assert (disabled.subject, disabled.scope) == ("orders/get-order", "orders/get-order")
    policy = arm.policy(("orders", "get-order")) or ""
    assert '<set-status code="403" reason="Forbidden" />' in policy
    assert await driver.enforces(disabled)
    assert arm.policy("orders") is None

    await store.lift(disabled)
    assert arm.policy(("orders", "get-order")) is None
    assert not await driver.enforces(disabled)

    for endpoint in ("GET /orders/{id}", "orders", "*"):
        with pytest.raises(PermanentError, match="disables one operation"):
            driver.accept(spec("disable", "endpoint", endpoint, scope=endpoint))


async def test_a_foreign_edit_between_read_and_write_is_kept(store: Store, arm: FakeArm) -> None:
    """The ETag changed under us: 412, then the new text is read and our region applied to it."""
    arm.set_policy("orders", OWNER)
    edited = OWNER.replace("<backend>\n        <base />", "<backend>\n        <forward-request />")
    store.on_read = lambda: arm.set_policy("orders", edited)
    await store.contain(block())

    puts = arm.requests_to("PUT", "/apis/orders/policies/policy")
    assert len(puts) == 2
    policy = arm.policy("orders") or ""
    assert "<forward-request />" in policy
    assert f"<address>{IP}</address>" in policy
    assert policy == OWNER_BLOCKED.replace(
        "<backend>\n        <base />", "<backend>\n        <forward-request />"
    )


async def test_endless_conflicts_are_left_to_the_engine(store: Store, arm: FakeArm) -> None:
    arm.set_policy("orders", OWNER)
    arm.fail_next(412, method="PUT", code="PreconditionFailed", times=5)
    with pytest.raises(TransientError, match="changed 5 times"):
        await store.contain(block())
    assert arm.policy("orders") == OWNER


# --- errors and long-running operations -------------------------------------------------------


async def test_throttled_by_arm_is_transient_with_retry_after(store: Store, arm: FakeArm) -> None:
    arm.fail_next(429, method="PUT", retry_after=7)
    with pytest.raises(TransientError, match="TooManyRequests") as caught:
        await store.contain(block())
    assert caught.value.retry_after == 7


async def test_server_error_is_transient(store: Store, arm: FakeArm) -> None:
    arm.fail_next(500, path_contains="/policies/policy")
    with pytest.raises(TransientError, match="500 InternalServerError"):
        await store.contain(block())


async def test_validation_error_is_permanent_with_the_vendor_message(
    store: Store, arm: FakeArm
) -> None:
    arm.fail_next(400, method="PUT", code="ValidationError", message="The policy is invalid.")
    with pytest.raises(PermanentError, match=r"400 ValidationError: The policy is invalid\."):
        await store.contain(block())


async def test_forbidden_names_the_role_needed(store: Store, arm: FakeArm) -> None:
    arm.fail_next(403, method="PUT", code="AuthorizationFailed", message="No write access.")
    with pytest.raises(PermanentError, match=r"AuthorizationFailed: No write access\.") as caught:
        await store.contain(block())
    assert "API Management Service Contributor" in str(caught.value)


@pytest.mark.parametrize("headers", ["azure-asyncoperation", "location", "both"])
async def test_long_running_writes_are_polled_to_completion(
    store: Store, arm: FakeArm, headers: Any
) -> None:
    arm.set_policy("orders", OWNER)
    arm.lro_next(Lro(polls=2, headers=headers))
    accepted = await store.contain(block())
    assert arm.policy("orders") == OWNER_BLOCKED
    assert arm.pending_operations == 0
    polled = "/operationStatuses/" if headers != "location" else "/operationResults/"
    assert len(arm.requests_to("GET", polled)) == 3

    arm.lro_next(Lro(polls=1, status=201, headers=headers))
    await store.lift(accepted)
    assert arm.policy("orders") == OWNER


async def test_failed_long_running_operation_is_permanent(store: Store, arm: FakeArm) -> None:
    arm.lro_next(Lro(polls=0, outcome="Failed", error={"code": "Conflict", "message": "nope"}))
    with pytest.raises(PermanentError, match="failed: Conflict: nope"):
        await store.contain(block())
    assert arm.policy("orders") is None


async def test_long_running_operation_bounded_by_the_timeout(store: Store, arm: FakeArm) -> None:
    arm.lro_next(Lro(polls=100, retry_after=10))
    with pytest.raises(TransientError, match="still running after 5s") as caught:
        await store.contain(block())
    assert caught.value.retry_after == 10


# --- credentials ------------------------------------------------------------------------------


async def test_suspend_and_reactivate_with_comments(driver: ApimDriver, arm: FakeArm) -> None:
    comment = "Suspended by Clampdown, remediation rem-1: key leaked"
    before = await driver.suspend(SUB1, comment)
    assert before == {"previous_state": "active", "previous_comment": None}
    assert arm.subscription("sub1")["state"] == "suspended"
    assert arm.subscription("sub1")["stateComment"] == comment
    assert await driver.credential_state(SUB1) == "suspended"
    [patch] = arm.requests_to("PATCH", "/subscriptions/sub1")
    assert patch.body == {"properties": {"state": "suspended", "stateComment": comment}}
    assert patch.headers["If-Match"]

    writes = arm.write_count()
    again = await driver.suspend(SUB1, comment)
    assert again == {"previous_state": "suspended", "previous_comment": comment}
    assert arm.write_count() == writes

    undo = "Reactivated by Clampdown: undo of remediation rem-1"
    await driver.reactivate(SUB1, undo)
    assert arm.subscription("sub1")["state"] == "active"
    assert arm.subscription("sub1")["stateComment"] == undo
    await driver.reactivate(SUB1, undo)
    assert arm.write_count() == writes + 1


async def test_suspend_retries_after_a_concurrent_change(driver: ApimDriver, arm: FakeArm) -> None:
    arm.fail_next(412, method="PATCH", code="PreconditionFailed")
    await driver.suspend(SUB1, "Suspended by Clampdown")
    assert arm.subscription("sub1")["state"] == "suspended"
    assert len(arm.requests_to("PATCH", "/subscriptions/sub1")) == 2


async def test_rotate_primary_and_secondary(driver: ApimDriver, arm: FakeArm) -> None:
    await driver.rotate(Credential(subscription="sub1", which="primary"))
    keys = arm.subscription("sub1")
    assert (keys["primaryKey"] != "p1", keys["secondaryKey"]) == (True, "s1")
    await driver.rotate(Credential(subscription="sub1", which="secondary"))
    assert arm.subscription("sub1")["secondaryKey"] != "s1"
    assert arm.subscription("sub1")["primaryKey"] == keys["primaryKey"]
    assert [r.path.rsplit("/", 1)[1] for r in arm.requests_to("POST", "/regenerate")] == [
        "regeneratePrimaryKey",
        "regenerateSecondaryKey",
    ]
    with pytest.raises(PermanentError, match="'tertiary'"):
        await driver.rotate(Credential(subscription="sub1", which="tertiary"))


async def test_unknown_subscription_is_permanent(driver: ApimDriver) -> None:
    nobody = Credential(subscription="nobody")
    for call in (
        driver.suspend(nobody, "x"),
        driver.reactivate(nobody, "x"),
        driver.rotate(nobody),
        driver.credential_state(nobody),
    ):
        with pytest.raises(PermanentError, match="no subscription 'nobody'"):
            await call


# --- hostile input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope",
    [
        "..",
        "orders/..",
        "../../subscriptions",
        "orders/get-order/policies",
        "orders%2F..",
        "orders?format=xml",
        "orders#x",
        "",
        "a" * 257,
        "/subscriptions/x/../../apis/orders",
    ],
)
async def test_hostile_scopes_are_refused_before_any_call(
    driver: ApimDriver, arm: FakeArm, scope: str
) -> None:
    with pytest.raises(PermanentError):
        driver.accept(block(scope=scope))
    with pytest.raises(PermanentError):
        await driver.reconcile(scope, Store(driver).wanted)
    assert arm.requests == []


@pytest.mark.parametrize(
    "request_",
    [
        spec("block", "ip", "203.0.113.7</address><x>"),
        spec("throttle", "subscription", 'a"); evil("', rate=1, period_seconds=60),
        spec("throttle", "ip", IP),
        spec("block", "api_key", "k"),
        spec("block", "subscription", "sub1"),
        spec("throttle", "user", "alice", rate=1, period_seconds=60),
    ],
)
async def test_unsupported_or_unsafe_containments_are_refused(
    driver: ApimDriver, request_: ContainmentSpec
) -> None:
    with pytest.raises(PermanentError):
        driver.accept(request_)


@pytest.mark.parametrize("sid", ["..", "../apis", "sub1/regeneratePrimaryKey", "sub 1", ""])
async def test_hostile_subscription_ids_are_refused(
    driver: ApimDriver, arm: FakeArm, sid: str
) -> None:
    with pytest.raises(PermanentError):
        await driver.suspend(Credential(subscription=sid), "x")
    with pytest.raises(PermanentError):
        await driver.rotate(Credential(subscription=sid))
    assert arm.requests == []


# --- check ------------------------------------------------------------------------------------


async def test_check_reads_and_never_writes(driver: ApimDriver, arm: FakeArm) -> None:
    checks = await driver.check()
    assert [(c.name, c.ok) for c in checks] == [
        ("sign-in", True),
        ("service", True),
        ("read apis", True),
        ("service policy", True),
    ]
    assert "no service policy" in checks[3].detail
    assert arm.write_count() == 0


async def test_check_reports_what_fails(
    make: Callable[..., ApimDriver], arm: FakeArm, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = await make(service_name="missing").check()
    assert [(c.name, c.ok) for c in checks] == [
        ("sign-in", True),
        ("service", False),
    ]
    assert "no API Management service missing" in checks[1].detail

    arm.fail_next(403, path_contains="/apis", code="AuthorizationFailed", message="Denied.")
    checks = await make().check()
    assert [(c.name, c.ok) for c in checks][2] == ("read apis", False)
    assert "AuthorizationFailed: Denied." in checks[2].detail
    assert "Contributor" in checks[2].detail
    assert arm.write_count() == 0

    monkeypatch.setenv(ENV, "wrong-secret-value-123")
    [sign_in] = await make().check()
    assert not sign_in.ok
    assert "client_secret" in sign_in.detail
    assert "wrong-secret-value-123" not in sign_in.detail


async def test_only_service_wide_blocks_are_probed(
    make: Callable[..., ApimDriver], arm: FakeArm
) -> None:
    """A throttle lets a first request through; a scoped block may not cover the probe URL."""
    driver = make(probe=Probe(url=f"{arm.url}/gateway/orders"))
    assert await driver.probe(block(scope="orders")) is None
    assert await driver.probe(spec("throttle", "ip", IP, rate=1, period_seconds=60)) is None
    assert arm.requests == []
    refusal = await driver.probe(block(scope="*"))
    [sent] = arm.requests_to("GET", "/gateway/orders")
    assert sent.headers["X-Forwarded-For"] == IP
    assert refusal == "probe of target apim got 401, expected 403"
