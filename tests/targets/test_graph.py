"""The graph driver against FakeGraph over real HTTP: tokens, identities, alerts, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from clampdown.actions.http import TargetHttp
from clampdown.errors import ActionError, PermanentError, PreconditionError, TransientError
from clampdown.secrets import SecretRef
from clampdown.sources import normalize
from clampdown.targets.driver import Principal
from clampdown.targets.graph import GraphDriver
from clampdown.targets.settings import GraphTarget
from clampdown.testing.graph import DEFAULT_ROLES, FakeGraph
from tests.conftest import sample

SECRET = "gr4ph-Secret~Value_42"
ENV = "CLAMPDOWN_TEST_GRAPH_SECRET"
ALICE = "alice@contoso.com"
GUEST = "jdoe_fabrikam.com#EXT#@contoso.onmicrosoft.com"
SP_ID = "6d3f1e2a-8b7c-4d5e-9f0a-1b2c3d4e5f60"
GRAPH_ALERT = "da637551227677560813_-961444813"


def graph_finding() -> dict[str, Any]:
    [finding] = normalize(sample("graph-alert-param-enum.json"), "graph")
    return finding.expression_view()


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph(tenant="t", client_id="c", client_secret=SECRET)
    fake.add_user(ALICE, id="11111111-1111-4111-8111-111111111111")
    fake.add_user("bob@contoso.com", id="22222222-2222-4222-8222-222222222222")
    fake.add_user(GUEST, id="33333333-3333-4333-8333-333333333333")
    fake.add_service_principal("payments-backend", id=SP_ID)
    fake.add_alert(sample("graph-alert-param-enum.json"))
    with fake.running() as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def make(
    graph: FakeGraph, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., GraphDriver]:
    monkeypatch.setenv(ENV, SECRET)

    def build(**overrides: Any) -> GraphDriver:
        values: dict[str, Any] = {
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": SecretRef(env=ENV),
            "login_url": graph.url,
            "graph_url": graph.url,
            "timeout": 5,
            **overrides,
        }
        settings = GraphTarget(**values)
        return GraphDriver("entra", settings, TargetHttp(session, settings.origins(), "entra"))

    return build


@pytest.fixture
def driver(make: Callable[..., GraphDriver]) -> GraphDriver:
    return make()


# --- tokens -----------------------------------------------------------------------------------


async def test_token_is_cached_and_fetched_again_after_a_401(
    driver: GraphDriver, graph: FakeGraph
) -> None:
    for _ in range(3):
        await driver.revoke_sessions(ALICE)
    assert graph.token_requests == 1
    [token_call] = graph.requests_to("POST", "/oauth2/")
    assert token_call.path == "/t/oauth2/v2.0/token"
    assert token_call.body == {
        "client_id": "c",
        "client_secret": SECRET,
        "grant_type": "client_credentials",
        "scope": "https://graph.microsoft.com/.default",
    }

    graph.expire_tokens()
    await driver.revoke_sessions(ALICE)
    assert graph.token_requests == 2
    assert len(graph.requests_to("POST", "/revokeSignInSessions")) == 5  # the 401, then again
    assert len(graph.revocations) == 4


async def test_bad_secret_fails_sign_in_without_showing_the_secret(
    make: Callable[..., GraphDriver], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "not-the-secret-987")
    with pytest.raises(PermanentError) as caught:
        await make().revoke_sessions(ALICE)
    message = str(caught.value)
    assert "invalid_client" in message
    assert "client_secret" in message
    assert "not-the-secret-987" not in message
    assert SECRET not in message


# --- identities -------------------------------------------------------------------------------


async def test_revoke_sessions_by_upn_guest_upn_and_object_id(
    driver: GraphDriver, graph: FakeGraph
) -> None:
    await driver.revoke_sessions(ALICE)
    await driver.revoke_sessions(GUEST)
    await driver.revoke_sessions("22222222-2222-4222-8222-222222222222")
    assert graph.revocations == [
        "11111111-1111-4111-8111-111111111111",
        "33333333-3333-4333-8333-333333333333",
        "22222222-2222-4222-8222-222222222222",
    ]
    paths = [r.path for r in graph.requests_to("POST", "/revokeSignInSessions")]
    assert paths[1] == f"/v1.0/users/{GUEST}/revokeSignInSessions"


async def test_unknown_user_is_a_permanent_error_with_graphs_message(driver: GraphDriver) -> None:
    with pytest.raises(PermanentError) as caught:
        await driver.revoke_sessions("nobody@contoso.com")
    message = str(caught.value)
    assert "404 Request_ResourceNotFound" in message
    assert "Resource 'nobody@contoso.com' does not exist" in message
    assert "request-id" in message


async def test_disable_reads_first_writes_only_a_change_and_reports_the_state_before(
    driver: GraphDriver, graph: FakeGraph
) -> None:
    alice = Principal(ALICE)
    assert await driver.set_enabled(alice, False) is True
    assert graph.user(ALICE)["accountEnabled"] is False
    [read] = graph.requests_to("GET", "/users/")
    assert read.query == {"$select": "id,accountEnabled"}
    [patch] = graph.requests_to("PATCH")
    assert patch.path == f"/v1.0/users/{ALICE}"
    assert patch.body == {"accountEnabled": False}

    assert await driver.set_enabled(alice, False) is False  # a repeat changes nothing
    assert len(graph.requests_to("PATCH")) == 1
    assert await driver.account_enabled(alice) is False
    assert await driver.set_enabled(alice, True) is False
    assert graph.user(ALICE)["accountEnabled"] is True


async def test_service_principals_are_disabled_by_object_id(
    driver: GraphDriver, graph: FakeGraph
) -> None:
    app = Principal(SP_ID, "service_principal")
    assert await driver.set_enabled(app, False) is True
    assert graph.service_principal(SP_ID)["accountEnabled"] is False
    assert graph.requests_to("PATCH")[0].path == f"/v1.0/servicePrincipals/{SP_ID}"
    assert await driver.account_enabled(app) is False


async def test_confirm_compromised_resolves_user_principal_names_to_ids(
    driver: GraphDriver, graph: FakeGraph
) -> None:
    await driver.confirm_compromised([ALICE, "22222222-2222-4222-8222-222222222222", ALICE])
    [post] = graph.requests_to("POST", "/confirmCompromised")
    assert post.body == {
        "userIds": [
            "11111111-1111-4111-8111-111111111111",
            "22222222-2222-4222-8222-222222222222",
        ]
    }
    risky = graph.risky_user("11111111-1111-4111-8111-111111111111")
    assert risky is not None
    assert risky["riskState"] == "confirmedCompromised"


@pytest.mark.parametrize(
    "user",
    [
        "../me",
        "..@contoso.com",
        "alice/../../me@contoso.com",
        "alice@contoso",
        "%2e%2e@contoso.com",
        "alice@contoso.com?$select=passwordProfile",
        "$admin@contoso.com",
        "alice@@contoso.com",
        "",
    ],
)
async def test_user_values_from_alerts_are_refused_before_any_call(
    driver: GraphDriver, graph: FakeGraph, user: str
) -> None:
    with pytest.raises(PermanentError, match="not a user object id or user principal name"):
        await driver.revoke_sessions(user)
    with pytest.raises(PermanentError):
        await driver.set_enabled(Principal(user), False)
    with pytest.raises(PermanentError):
        await driver.confirm_compromised([user])
    assert graph.requests == []


async def test_a_service_principal_must_be_an_object_id(
    driver: GraphDriver, graph: FakeGraph
) -> None:
    with pytest.raises(PermanentError, match="not a service principal object id"):
        await driver.set_enabled(Principal("payments-backend", "service_principal"), False)
    assert graph.requests == []


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "maybe_delivered"),
    [
        (429, TransientError, False),
        (503, TransientError, False),
        (500, TransientError, True),
        (504, TransientError, True),
        (400, PermanentError, None),
        (403, PreconditionError, None),
    ],
)
async def test_graph_errors_are_classified_with_the_vendor_message(
    driver: GraphDriver,
    graph: FakeGraph,
    status: int,
    kind: type[ActionError],
    maybe_delivered: bool | None,
) -> None:
    graph.fail_next(status, path_contains="/revokeSignInSessions", retry_after=7, message="Nope.")
    with pytest.raises(kind) as caught:
        await driver.revoke_sessions(ALICE)
    message = str(caught.value)
    assert f"Graph answered {status}" in message
    assert "Nope." in message
    assert graph.revocations == []
    if isinstance(caught.value, TransientError):
        assert caught.value.retry_after == 7
        assert caught.value.maybe_delivered is maybe_delivered
    token = graph.requests_to("POST", "/revoke")[0].headers["Authorization"].split()[1]
    assert token not in message
    assert SECRET not in message


async def test_throttling_answer_has_graphs_shape(driver: GraphDriver, graph: FakeGraph) -> None:
    graph.fail_next(429, retry_after=3)
    with pytest.raises(TransientError, match="429 TooManyRequests: Please retry again later") as e:
        await driver.set_enabled(Principal(ALICE), False)
    assert e.value.retry_after == 3
    assert graph.user(ALICE)["accountEnabled"] is True


async def test_a_missing_permission_names_the_one_to_grant(
    graph: FakeGraph, make: Callable[..., GraphDriver]
) -> None:
    graph.roles = frozenset({"User.Read.All"})
    with pytest.raises(PreconditionError) as caught:
        await make().set_enabled(Principal(ALICE), False)
    message = str(caught.value)
    assert "403 Authorization_RequestDenied: Insufficient privileges" in message
    assert "User.EnableDisableAccount.All application permission" in message
    assert graph.user(ALICE)["accountEnabled"] is True


# --- alerts -----------------------------------------------------------------------------------


async def test_resolve_writes_the_graph_alert_once_and_comments_once(
    driver: GraphDriver, graph: FakeGraph
) -> None:
    """The source id is Defender's providerAlertId; Graph's id comes from the alert's link."""
    finding = graph_finding()
    assert finding["source_id"] == "2517170843055555555_e5"
    for _ in range(2):
        await driver.update_finding(finding, "resolved", "Blocked 198.51.100.150 by Clampdown")
    alert = graph.alert(GRAPH_ALERT)
    assert alert["status"] == "resolved"
    assert alert["resolvedDateTime"] is not None
    assert [c["comment"] for c in alert["comments"]] == ["Blocked 198.51.100.150 by Clampdown"]
    [patch] = graph.requests_to("PATCH")
    assert patch.path == f"/v1.0/security/alerts_v2/{GRAPH_ALERT}"
    assert patch.body == {"status": "resolved"}
    [post] = graph.requests_to("POST", "/comments")
    assert post.body == {
        "@odata.type": "microsoft.graph.security.alertComment",
        "comment": "Blocked 198.51.100.150 by Clampdown",
    }


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("in_progress", {"status": "inProgress", "classification": None}),
        ("dismissed", {"status": "resolved", "classification": "falsePositive"}),
        ("active", {"status": "new", "classification": None}),
    ],
)
async def test_each_state_maps_to_alerts_v2_values(
    driver: GraphDriver, graph: FakeGraph, state: str, expected: dict[str, Any]
) -> None:
    if state == "active":
        await driver.update_finding(graph_finding(), "resolved", "")
    await driver.update_finding(graph_finding(), state, "")
    alert = graph.alert(GRAPH_ALERT)
    assert {key: alert[key] for key in expected} == expected
    assert graph.requests_to("POST", "/comments") == []


async def test_without_a_link_the_source_id_is_tried_as_the_graph_id(
    driver: GraphDriver, graph: FakeGraph
) -> None:
    finding = dict(graph_finding(), url="", source_id=GRAPH_ALERT)
    await driver.update_finding(finding, "in_progress", "")
    assert graph.alert(GRAPH_ALERT)["status"] == "inProgress"


async def test_an_alert_graph_does_not_know_is_refused(
    driver: GraphDriver, graph: FakeGraph
) -> None:
    finding = dict(graph_finding(), url="https://security.microsoft.com/alerts/da0000_-1")
    with pytest.raises(PermanentError, match="Graph knows no alert 'da0000_-1' or '2517"):
        await driver.update_finding(finding, "resolved", "")
    assert graph.write_count() == 0


async def test_findings_from_other_paths_are_refused_naming_the_defender_target(
    driver: GraphDriver, graph: FakeGraph
) -> None:
    [rest] = normalize(sample("defender-rest-suspicious-ip.json"), "defender-rest")
    with pytest.raises(PermanentError, match=r"came as 'defender-rest'.*defender target"):
        await driver.update_finding(rest.expression_view(), "resolved", "")
    hostile = dict(graph_finding(), url="https://x/alerts/..%2f..%2fusers", source_id="../users")
    with pytest.raises(PermanentError, match="names no Graph alert id"):
        await driver.update_finding(hostile, "resolved", "")
    assert graph.requests == []


# --- check ------------------------------------------------------------------------------------


async def test_check_signs_in_reads_and_reports_granted_permissions(driver: GraphDriver) -> None:
    checks = {c.name: c for c in await driver.check()}
    assert [c.ok for c in checks.values()] == [True, True, True, True]
    assert checks["sign-in"].detail == "c in tenant t"
    assert checks["permissions"].detail == "granted: " + ", ".join(sorted(DEFAULT_ROLES))


async def test_check_names_missing_permissions(
    graph: FakeGraph, make: Callable[..., GraphDriver]
) -> None:
    roles = set(DEFAULT_ROLES) - {"IdentityRiskyUser.ReadWrite.All", "SecurityAlert.ReadWrite.All"}
    graph.roles = frozenset(roles)
    checks = {c.name: c for c in await make().check()}
    assert checks["read users"].ok
    assert not checks["permissions"].ok
    assert checks["permissions"].detail == (
        "cannot confirm users compromised (IdentityRiskyUser.ReadWrite.All); "
        "cannot update security alerts (SecurityAlert.ReadWrite.All)"
    )
    assert not checks["read alerts"].ok
    assert "SecurityAlert.ReadWrite.All" in checks["read alerts"].detail


async def test_check_stops_at_a_refused_sign_in(
    make: Callable[..., GraphDriver], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "wrong-secret-123")
    [check] = await make().check()
    assert check.name == "sign-in"
    assert not check.ok
    assert "invalid_client" in check.detail
    assert "wrong-secret-123" not in check.detail
