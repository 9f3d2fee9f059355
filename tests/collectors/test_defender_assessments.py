"""The defender-assessments collector: API Management resources only, every one on each pull."""

from __future__ import annotations

from clampdown.collectors.runner import pull_once
from clampdown.testing.defender import FakeDefender
from tests.collectors.conftest import (
    APIM,
    SUB,
    OpenApp,
    Sleeps,
    assessment,
    assessments_source,
    source_ids,
)

STORAGE = (
    f"/subscriptions/{SUB}/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/files"
)
OTHER_APIM = (
    f"/subscriptions/{SUB}/resourceGroups/rg-other/providers/Microsoft.ApiManagement"
    "/service/apim2/apis/hr"
)


def seed(defender: FakeDefender) -> list[str]:
    """Four APIM endpoints in rg-payments, one APIM API elsewhere, and a storage account."""
    ids = [
        defender.add_assessment(assessment(f"{APIM}/apis/orders/operations/op{n}"))
        for n in range(4)
    ]
    ids.append(defender.add_assessment(assessment(OTHER_APIM)))
    defender.add_assessment(assessment(STORAGE, key="1a2b3c4d-0000-4000-8000-000000000001"))
    return ids


async def test_only_api_management_assessments_are_ingested(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    apim = seed(defender)
    app = open_app(assessments_source(defender.url))
    result = await pull_once(app, "mdc-posture", sleep=sleeps)
    assert (result.pages, result.received, result.kept, result.new) == (2, 6, 5, 5)
    assert source_ids(app) == sorted(apim)
    [first, _] = defender.requests_to("GET", "/providers/Microsoft.Security/assessments")
    assert first.path == f"/subscriptions/{SUB}/providers/Microsoft.Security/assessments"
    assert first.query == {"api-version": "2021-06-01", "$expand": "metadata"}
    # With the metadata expanded, the finding carries the recommendation's severity.
    assert {row["severity"] for row in app.list_findings()} == {"high"}


async def test_a_resource_group_scope_keeps_that_group(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    apim = seed(defender)
    scope = {"subscription_id": SUB, "resource_group": "rg-payments"}
    app = open_app(assessments_source(defender.url, scope=scope))
    await pull_once(app, "mdc-posture", sleep=sleeps)
    assert source_ids(app) == sorted(apim[:4])


async def test_every_pull_ingests_every_assessment_whatever_its_age(
    defender: FakeDefender, open_app: OpenApp, sleeps: Sleeps
) -> None:
    """A status change (Unhealthy -> Healthy) reaches ingest on the next pull."""
    apim = seed(defender)
    app = open_app(assessments_source(defender.url))
    await pull_once(app, "mdc-posture", sleep=sleeps)
    defender.set_assessment_status(apim[0], "Healthy")
    again = await pull_once(app, "mdc-posture", sleep=sleeps)
    assert (again.received, again.kept, again.new, again.repeats) == (6, 5, 0, 5)
    assert source_ids(app) == sorted(apim)
