"""The defender driver against FakeDefender over real HTTP: which alert, verbs, errors, check."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from clampdown.actions.http import TargetHttp
from clampdown.errors import ActionError, PermanentError, PreconditionError, TransientError
from clampdown.secrets import SecretRef
from clampdown.sources import normalize
from clampdown.targets.defender import DefenderDriver
from clampdown.targets.settings import DefenderTarget
from clampdown.testing.defender import FakeDefender
from tests.conftest import sample

SECRET = "d3fender-Secret~Value_77"
ENV = "CLAMPDOWN_TEST_DEFENDER_SECRET"
SUB = "6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10"
ALERTS = f"/subscriptions/{SUB}/resourceGroups/rg-payments/providers/Microsoft.Security/locations"
REST_FIXTURE = "defender-rest-suspicious-ip.json"
REST_ID = sample(REST_FIXTURE)["id"]
LOCATIONS = f"/subscriptions/{SUB}/providers/Microsoft.Security/locations"


def view(name: str) -> dict[str, Any]:
    [finding] = normalize(sample(name))
    return finding.expression_view()


def alert_resource(alert_id: str) -> dict[str, Any]:
    """The REST sample, renamed to `alert_id`."""
    alert = copy.deepcopy(sample(REST_FIXTURE))
    alert["id"] = alert_id
    alert["name"] = alert["properties"]["systemAlertId"] = alert_id.rsplit("/", 1)[-1]
    return alert


@pytest.fixture
def defender() -> Iterator[FakeDefender]:
    fake = FakeDefender(tenant="t", client_id="c", client_secret=SECRET, subscription_id=SUB)
    fake.add_alert(sample(REST_FIXTURE))
    with fake.running() as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def make(
    defender: FakeDefender, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., DefenderDriver]:
    monkeypatch.setenv(ENV, SECRET)

    def build(**overrides: Any) -> DefenderDriver:
        values: dict[str, Any] = {
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": SecretRef(env=ENV),
            "login_url": defender.url,
            "management_url": defender.url,
            "timeout": 5,
            **overrides,
        }
        settings = DefenderTarget(**values)
        return DefenderDriver("mdc", settings, TargetHttp(session, settings.origins(), "mdc"))

    return build


@pytest.fixture
def driver(make: Callable[..., DefenderDriver]) -> DefenderDriver:
    return make()


# --- tokens -----------------------------------------------------------------------------------


async def test_token_and_home_location_are_read_once_and_a_401_fetches_a_new_token(
    driver: DefenderDriver, defender: FakeDefender
) -> None:
    finding = view(REST_FIXTURE)
    for _ in range(3):
        await driver.update_finding(finding, "resolved", "")
    assert defender.token_requests == 1
    [token_call] = defender.requests_to("POST", "/oauth2/")
    assert token_call.body["scope"] == "https://management.azure.com/.default"
    assert len(defender.requests_to("GET", LOCATIONS)) == 1

    defender.expire_tokens()
    await driver.update_finding(finding, "in_progress", "")
    assert defender.token_requests == 2
    assert defender.status_of(REST_ID) == "InProgress"


async def test_bad_secret_is_refused_without_showing_it(
    make: Callable[..., DefenderDriver], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "wrong-secret-456")
    with pytest.raises(PermanentError) as caught:
        await make().update_finding(view(REST_FIXTURE), "resolved", "")
    message = str(caught.value)
    assert "invalid_client" in message
    assert "wrong-secret-456" not in message
    assert SECRET not in message


# --- which alert ------------------------------------------------------------------------------


async def test_a_rest_alert_is_found_from_its_resource_and_the_home_location(
    driver: DefenderDriver, defender: FakeDefender
) -> None:
    await driver.update_finding(view(REST_FIXTURE), "resolved", "ignored")
    assert defender.status_of(REST_ID) == "Resolved"
    [read] = defender.requests_to("GET", LOCATIONS)
    assert read.query == {"api-version": "2015-06-01-preview"}
    [post] = defender.requests_to("POST", "/alerts/")
    assert post.path == f"{REST_ID}/resolve"
    assert post.query == {"api-version": "2022-01-01"}
    assert post.body is None


@pytest.mark.parametrize(
    "fixture",
    [
        "defender-workflow-tor.json",
        "securityalert-row-useragent.json",
        "graph-alert-param-enum.json",
    ],
)
async def test_every_shape_naming_the_defender_alert_can_be_written_back(
    driver: DefenderDriver, defender: FakeDefender, fixture: str
) -> None:
    finding = view(fixture)
    alert_id = f"{ALERTS}/westeurope/alerts/{finding['source_id']}"
    defender.add_alert(alert_resource(alert_id))
    await driver.update_finding(finding, "dismissed", "")
    assert defender.transitions == [(alert_id, "Dismissed")]


async def test_a_portal_deep_link_names_the_alert_without_a_lookup(
    driver: DefenderDriver, defender: FakeDefender
) -> None:
    alert_id = (
        f"/subscriptions/{SUB}/resourceGroups/rg-edge/providers/Microsoft.Security"
        "/locations/northeurope/alerts/2518_abc"
    )
    defender.add_alert(alert_resource(alert_id))
    link = (
        "https://portal.azure.com/#blade/Microsoft_Azure_Security_AzureDefenderForData/"
        f"AlertBlade/alertId/2518_abc/subscriptionId/{SUB}/resourceGroup/rg-edge/"
        "referencedFrom/alertDeepLink/location/northeurope"
    )
    sentinel = view("sentinel-incident-payload.json")
    await driver.update_finding(dict(sentinel, url=link), "resolved", "")
    assert defender.status_of(alert_id) == "Resolved"
    assert defender.requests_to("GET", LOCATIONS) == []


async def test_a_source_id_that_is_the_arm_id_is_used_as_it_is(
    driver: DefenderDriver, defender: FakeDefender
) -> None:
    alert_id = f"/subscriptions/{SUB}/providers/Microsoft.Security/locations/centralus/alerts/sub-1"
    defender.add_alert(alert_resource(alert_id))
    finding = {"source": "generic", "shape": "generic", "source_id": alert_id, "apis": []}
    await driver.update_finding(finding, "in_progress", "")
    assert defender.status_of(alert_id) == "InProgress"


@pytest.mark.parametrize(
    ("state", "verb", "status"),
    [
        ("in_progress", "inProgress", "InProgress"),
        ("resolved", "resolve", "Resolved"),
        ("dismissed", "dismiss", "Dismissed"),
        ("active", "activate", "Active"),
    ],
)
async def test_each_state_is_its_verb(
    driver: DefenderDriver, defender: FakeDefender, state: str, verb: str, status: str
) -> None:
    await driver.update_finding(view(REST_FIXTURE), state, "")
    assert defender.requests_to("POST", "/alerts/")[0].path.endswith("/" + verb)
    assert defender.status_of(REST_ID) == status


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("sentinel-incident-payload.json", "neither the alert's ARM id nor its portal deep link"),
        ("recommendation-unused-endpoint.json", "'defender-assessment' finding"),
        ("ocsf-detection-finding.json", "from 'ocsf:example-api-firewall'"),
    ],
)
async def test_findings_whose_alert_cannot_be_named_are_refused(
    driver: DefenderDriver, defender: FakeDefender, fixture: str, reason: str
) -> None:
    with pytest.raises(PermanentError, match=r"^target mdc: cannot tell") as caught:
        await driver.update_finding(view(fixture), "resolved", "")
    assert reason in str(caught.value)
    assert defender.requests == []


@pytest.mark.parametrize(
    "change",
    [
        {"source_id": "../../providers/Microsoft.Authorization/x"},
        {"source_id": "a/b"},
        {"apis": [{"id": f"/subscriptions/{SUB}/resourceGroups/../providers/x"}]},
        {"apis": [{"id": "/subscriptions/not-a-guid/resourceGroups/rg/providers/x"}]},
        {"apis": []},
        {
            "url": f"https://p/#blade/x/alertId/a/subscriptionId/{SUB}/resourceGroup/rg/location/w%20e"
        },
        {"source_id": f"/subscriptions/{SUB}/providers/Microsoft.Security/locations/../alerts/x"},
    ],
)
async def test_alert_parts_from_findings_are_checked_before_any_call(
    driver: DefenderDriver, defender: FakeDefender, change: dict[str, Any]
) -> None:
    with pytest.raises(PermanentError, match=r"^target mdc: "):
        await driver.update_finding(dict(view(REST_FIXTURE), **change), "resolved", "")
    assert defender.requests == []


# --- errors -----------------------------------------------------------------------------------


async def test_an_unknown_alert_is_permanent_and_says_how_its_id_was_made(
    driver: DefenderDriver, defender: FakeDefender
) -> None:
    finding = dict(view(REST_FIXTURE), source_id="2517000000000000000_gone")
    with pytest.raises(PermanentError) as caught:
        await driver.update_finding(finding, "resolved", "")
    message = str(caught.value)
    assert (
        f"no Defender for Cloud alert {ALERTS}/westeurope/alerts/2517000000000000000_gone"
        in message
    )
    assert "404 NotFound: The alert '2517000000000000000_gone' was not found." in message
    assert "derived from the alerted resource" in message


async def test_missing_role_is_a_precondition_naming_security_admin(
    driver: DefenderDriver, defender: FakeDefender
) -> None:
    defender.can_write = False
    with pytest.raises(PreconditionError) as caught:
        await driver.update_finding(view(REST_FIXTURE), "resolved", "")
    message = str(caught.value)
    assert "403 AuthorizationFailed: The client 'c'" in message
    assert "Security Admin role" in message
    assert defender.status_of(REST_ID) == "Active"


@pytest.mark.parametrize(
    ("status", "kind", "maybe_delivered"),
    [
        (429, TransientError, False),
        (503, TransientError, False),
        (500, TransientError, True),
        (400, PermanentError, None),
    ],
)
async def test_arm_errors_are_classified_with_the_vendor_message(
    driver: DefenderDriver,
    defender: FakeDefender,
    status: int,
    kind: type[ActionError],
    maybe_delivered: bool | None,
) -> None:
    defender.fail_next(status, method="POST", retry_after=9, message="Slow down, please.")
    with pytest.raises(kind) as caught:
        await driver.update_finding(view(REST_FIXTURE), "resolved", "")
    message = str(caught.value)
    assert f"answered {status}" in message
    assert "Slow down, please." in message
    assert defender.status_of(REST_ID) == "Active"
    if isinstance(caught.value, TransientError):
        assert caught.value.retry_after == 9
        assert caught.value.maybe_delivered is maybe_delivered
    token = defender.requests_to("POST", "/alerts/")[0].headers["Authorization"].split()[1]
    assert token not in message
    assert SECRET not in message


# --- check ------------------------------------------------------------------------------------


async def test_check_lists_subscriptions_and_their_defender_location(
    driver: DefenderDriver,
) -> None:
    checks = await driver.check()
    assert [(c.name, c.ok) for c in checks] == [
        ("sign-in", True),
        ("subscriptions", True),
        (f"subscription {SUB}", True),
    ]
    assert checks[2].detail.startswith("Defender for Cloud location westeurope")


async def test_check_reports_a_refused_listing(
    driver: DefenderDriver, defender: FakeDefender
) -> None:
    defender.fail_next(403, path_contains="/subscriptions", code="AuthorizationFailed")
    checks = await driver.check()
    assert [(c.name, c.ok) for c in checks] == [("sign-in", True), ("subscriptions", False)]
    assert "Security Admin" in checks[1].detail
