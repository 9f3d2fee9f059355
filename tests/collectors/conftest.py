"""Collector fixtures: the Defender (ARM) and Graph fakes, sources pointed at them, records."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clampdown.config import Config
from clampdown.services import Clampdown
from clampdown.testing.defender import FakeDefender
from clampdown.testing.graph import FakeGraph
from tests.conftest import make_config, sample

SECRET = "c0llector-Secret~Value_42"
SECRET_ENV = "CLAMPDOWN_TEST_SOURCE_SECRET"
SUB = "6f1c2b9e-0a4d-4c1e-9d43-2b8f7e1a5c10"
OTHER_SUB = "0b6e6a2c-7f3e-4c55-b8f1-92d1b3d4a0e7"
RG = "rg-payments"
APIM = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ApiManagement/service/apim1"
PAGE = 3


def now() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def arm_alert(
    name: str,
    *,
    alert_type: str = "API_AccessFromSuspiciousIP",
    at: datetime | None = None,
    group: str = RG,
    subscription: str = SUB,
) -> dict[str, Any]:
    """The REST alert sample renamed `name`, of `alert_type`, generated at `at` (default now)."""
    alert = copy.deepcopy(sample("defender-rest-suspicious-ip.json"))
    alert["id"] = (
        f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Security"
        f"/locations/westeurope/alerts/{name}"
    )
    alert["name"] = name
    props = alert["properties"]
    props["systemAlertId"] = name
    props["alertType"] = alert_type
    when = at or now()
    props["timeGeneratedUtc"] = stamp(when)
    props["processingEndTimeUtc"] = stamp(when)
    return alert


def graph_alert(
    name: str,
    *,
    at: datetime | None = None,
    detection_source: str = "microsoftDefenderForApiManagement",
) -> dict[str, Any]:
    """The Graph alert sample with id and provider id from `name`, updated at `at`."""
    alert = copy.deepcopy(sample("graph-alert-param-enum.json"))
    alert["id"] = f"da{name}"
    alert["providerAlertId"] = name
    alert["detectionSource"] = detection_source
    alert["lastUpdateDateTime"] = stamp(at or now())
    return alert


def assessment(resource: str, key: str = "91af2040-7874-4659-abf0-578e1f8d07dc") -> dict[str, Any]:
    """The unauthenticated-endpoint recommendation, about `resource` (an ARM id)."""
    found = copy.deepcopy(sample("recommendation-unauthenticated-endpoint.json"))
    found["id"] = f"{resource}/providers/Microsoft.Security/assessments/{key}"
    found["name"] = key
    found["properties"]["resourceDetails"] = {"Source": "Azure", "Id": resource}
    return found


def identity(fake_url: str) -> dict[str, Any]:
    return {
        "tenant_id": "t",
        "client_id": "c",
        "client_secret": {"env": SECRET_ENV},
        "login_url": fake_url,
        "timeout": 5,
    }


def defender_alerts_source(url: str, name: str = "mdc-alerts", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "defender-alerts",
        "identity": identity(url),
        "scope": {"subscription_id": SUB},
        "management_url": url,
        **extra,
    }


def graph_source(url: str, name: str = "graph-alerts", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "graph-alerts",
        "identity": identity(url),
        "graph_url": url,
        **extra,
    }


def assessments_source(url: str, name: str = "mdc-posture", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "defender-assessments",
        "identity": identity(url),
        "scope": {"subscription_id": SUB},
        "management_url": url,
        **extra,
    }


class Sleeps:
    """A stand-in for asyncio.sleep that records the waits asked for and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


@pytest.fixture
def defender() -> Iterator[FakeDefender]:
    """ARM with Defender for Cloud alerts and assessments, three records per page."""
    fake = FakeDefender(
        tenant="t", client_id="c", client_secret=SECRET, subscription_id=SUB, page_size=PAGE
    )
    with fake.running() as running:
        yield running


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    """Microsoft Graph with security alerts, three per page."""
    fake = FakeGraph(tenant="t", client_id="c", client_secret=SECRET, page_size=PAGE)
    with fake.running() as running:
        yield running


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


OpenApp = Callable[..., Clampdown]


@pytest.fixture
def open_app(tmp_path: Path, database_url: str) -> Iterator[OpenApp]:
    """Open Clampdown on the test database with `sources`; closed at the end of the test."""
    opened: list[Clampdown] = []

    def open_(*sources: dict[str, Any]) -> Clampdown:
        config: Config = make_config(tmp_path, sources=list(sources))
        app = Clampdown.open(config, database_url=database_url)
        opened.append(app)
        return app

    yield open_
    for app in opened:
        app.close()


def source_ids(app: Clampdown) -> list[str]:
    """The source ids of every stored finding, sorted."""
    return sorted(row["source_id"] for row in app.list_findings(limit=1000))


def ago(**delta: float) -> datetime:
    return now() - timedelta(**delta)
